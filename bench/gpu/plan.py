"""The plan: the device tool calls, each with its command text, what it carries, its time limit and the time it
is expected to take; and the GPU host's limits the plan is checked against."""

from dataclasses import dataclass

MIB = 1 << 20
LIMITS = {"call_s": 600, "planned_call_s": 540, "travel_bytes": 64 * MIB, "files_back": 8,
          "file_back_bytes": 16 * MIB, "warm_after_s": 30, "device_s": 900}
CARRY1, CARRY2 = ".carry/gpu1", ".carry/gpu2"
# measured by pack.sh (../shared/gpu-browser/README.md): Chromium part 1 is one 38,000,000-byte split
CHROMIUM_PART1_BYTES = 38_000_000
WHEELS = ("transformers==5.23.0",)  # the host has 5.17, whose Janus generate breaks; pure Python
SITE_ARCHIVE, PAGE_ARCHIVE = "site.tar.xz", "page.tar.xz"  # in CARRY1 and CARRY2 (stage.py)
UNTIL2, UNTIL3 = 540, 660  # s after call 1 started the chain: when calls 2 and 3 stop waiting and return
# Python runs from $JW, not from the checkout: the checkout's janusweb/ folder would shadow the installed package
PREAMBLE = ("set -o pipefail; export JW=${JW:-/tmp/jw} PYTHONUNBUFFERED=1 PYTHONPATH=${JW:-/tmp/jw}/site; R=$PWD; "
            "mkdir -p $JW && cd $JW &&")


@dataclass(frozen=True)
class Call:
    name: str
    command: str
    carry: tuple
    timeout_s: int
    expected_s: int  # this call's own run, from the steps' measured or estimated times (README.md)
    returns: str


def calls(model: str = "janus-pro-1b", quick: bool = False) -> list:
    q = " --quick" if quick else ""
    py = "python3 -m janusweb bench gpu"
    install = (f"python3 -m tarfile --filter data -e $R/{CARRY1}/{SITE_ARCHIVE} $JW/site && "
               f"python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir "
               f"--upgrade --target $JW/site $R/{CARRY1}/wheels/*.whl ||exit;")
    return [
        Call("1-start", f"{PREAMBLE} {install} {py} step1 --model {model}{q} --carry $R/{CARRY1}", (CARRY1,), 120, 30,
             "step1.txt: what was staged and the chain's pid (export, quantize, WGSL pack run on in a new "
             "session)"),
        Call("2-browser-collect", f"{PREAMBLE} {py} step2 --carry $R/{CARRY2} --until {UNTIL2}", (CARRY2,), 560, 510,
             "the report files if the chain ended by then, else its partial rows, step times and log"),
        Call("3-collect", f"{PREAMBLE} {py} collect --until {UNTIL3}", (), 300, UNTIL3 - UNTIL2,
             "only when call 2 said 'not done': the same files, as far as the chain got by its cutoff"),
    ]


# expected seconds of the chain's steps on the H200 host for janus-pro-1b (README.md says where each comes from)
EXPECTED_1B = {"export --no-validate": 150, "quantize int8 --no-report": 75, "wgsl-pack int8": 40,
               "bench kernels (beside the export)": 60, "bench run": 360}
DEVICE_START_S = 120  # "a minute or more" (the device README); counted in the 15 minutes


TRANSFERS_S = 40  # three calls' uploads (about 50 MiB each) and returns


def expected_chain_s() -> int:
    return sum(v for k, v in EXPECTED_1B.items() if "beside" not in k)


def device_cap_s() -> int:
    """The most device time the plan can take: start + the chain's cutoff (call 3 returns by then whatever is
    done) + transfers; give_back right after call 3 (else add the 30 s the host stays warm)."""
    return DEVICE_START_S + UNTIL3 + TRANSFERS_S


def table(model: str = "janus-pro-1b") -> str:
    lines = ["| call | carry | time limit s | expected s | returns |", "|---|---|---|---|---|"]
    for c in calls(model):
        lines.append(f"| {c.name} | {', '.join(c.carry) or '–'} | {c.timeout_s} | {c.expected_s} | {c.returns} |")
    lines += ["", "Chain on the host (expected s): " + ", ".join(f"{k} {v}" for k, v in EXPECTED_1B.items()),
              f"chain expected {expected_chain_s()} s, cut off at {UNTIL3} s; device time at most {device_cap_s()} s "
              f"of {LIMITS['device_s']} (start {DEVICE_START_S} s and transfers {TRANSFERS_S} s included)"]
    lines += ["", "Commands (paste as the device tool's `run` command, in this order, each within 30 s of the last):", ""]
    for c in calls(model):
        lines += [f"{c.name}: carry={list(c.carry)} timeout_s={c.timeout_s}", f"    {c.command}"]
    return "\n".join(lines)
