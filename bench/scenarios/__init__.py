"""The benchmark scenarios, one module each, listed once here: `janusweb bench NAME`.

Adding a scenario: one module in this folder with a `Scenario` subclass (bench/scenario.py; import heavy
packages inside its methods: `janusweb bench --help` imports every scenario for its summary line) and one line
in SCENARIOS below.
"""

import importlib

SCENARIOS = {
    "run": "janusweb.bench.scenarios.run:Run",
    "kernels": "janusweb.bench.scenarios.kernels:Kernels",
    "cpu-kernels": "janusweb.bench.scenarios.cpu_kernels:CpuKernels",
    "cpu-accuracy": "janusweb.bench.scenarios.cpu_accuracy:CpuAccuracy",
    "peers": "janusweb.bench.scenarios.peers:Peers",
    "export": "janusweb.bench.scenarios.export:Export",
    "serve": "janusweb.bench.scenarios.serve:Serve",
    "quality": "janusweb.bench.scenarios.quality:Quality",
}
NAMES = tuple(SCENARIOS)


def load(name: str):
    module, cls = SCENARIOS[name].split(":")
    return getattr(importlib.import_module(module), cls)()
