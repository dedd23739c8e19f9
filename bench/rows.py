"""One benchmark row: the case it ran (every parameter's value), how it went (ran; skipped with the reason it
cannot run here; failed with the error) and its figures, typed by the scenario's metrics."""

from dataclasses import dataclass, field

RAN, SKIPPED, FAILED = "ran", "skipped", "failed"


def error_line(error: BaseException) -> str:
    """`Type: first line of the message` (the traceback goes to the log)."""
    first = (str(error).strip().splitlines() or [""])[0]
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


@dataclass
class Row:
    case: dict
    status: str = RAN
    reason: str | None = None  # SKIPPED: why it cannot run here; FAILED: the error
    metrics: dict = field(default_factory=dict)
    label: dict = field(default_factory=dict)  # what ran it: device, provider, adapter, versions
    detail: dict = field(default_factory=dict)  # report.json only: per-step times, tokens

    @property
    def ran(self) -> bool:
        return self.status == RAN

    def to_dict(self) -> dict:
        out = {"params": self.case, "status": self.status}
        if self.reason is not None:
            out["reason"] = self.reason
        if self.ran:
            out.update(metrics=self.metrics, label=self.label, detail=self.detail)
        return out


def check_types(row: Row, metrics: tuple) -> None:
    """A ran row's figures against the scenario's columns: known keys, the declared type (int counts as float;
    None is "not measured")."""
    known = {m.key: m for m in metrics}
    unknown = sorted(set(row.metrics) - set(known))
    if unknown:
        raise TypeError(f"figures {', '.join(unknown)} are not among the scenario's metrics")
    for key, value in row.metrics.items():
        want = known[key].type
        ok = value is None or isinstance(value, want) or (want is float and isinstance(value, int)
                                                             and not isinstance(value, bool))
        if not ok:
            raise TypeError(f"{key} is {type(value).__name__} ({value!r}), the scenario declares {want.__name__}")
