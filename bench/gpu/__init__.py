"""The GPU rows in one prepared run (bench/gpu/README.md): `janusweb bench gpu plan|stage|step1|step2|
collect|chain|rehearse`. plan.py holds the commands pasted into the GPU host's tool, stage.py prepares what
travels with each, host.py and chain.py run there, rehearse.py runs the same commands here on `tiny`."""
