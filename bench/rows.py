"""One benchmark row: what ran (name, dtype, the page engine or runner variant), how it went (ran, skipped with
the reason it cannot run here, failed with the error), and its numbers."""

from dataclasses import dataclass, field

RAN, SKIPPED, FAILED = "ran", "skipped", "failed"


@dataclass
class Row:
    name: str
    dtype: str
    variant: str = ""  # e.g. the page's decoder engine when several are compared in one run
    status: str = RAN
    reason: str | None = None  # SKIPPED: why it cannot run here; FAILED: the error
    label: dict = field(default_factory=dict)  # what ran it: device, provider, adapter, versions
    result: dict | None = None
    load_s: float | None = None
    extra: dict = field(default_factory=dict)  # backend-specific figures kept as they are (e.g. load_sessions)
    parity: dict | None = None
    parity_vs_fp32_same_backend: dict | None = None

    @property
    def ran(self) -> bool:
        return self.status == RAN and self.result is not None

    def skipped(self, why: str) -> "Row":
        return Row(self.name, self.dtype, self.variant, SKIPPED, why)

    def failed(self, error: BaseException | str) -> "Row":
        if not isinstance(error, str):
            first = (str(error).strip().splitlines() or [""])[0]
            error = f"{type(error).__name__}: {first}" if first else type(error).__name__
        return Row(self.name, self.dtype, self.variant, FAILED, error)

    def title(self) -> str:
        return f"{self.name} [{self.variant}]" if self.variant else self.name

    def to_dict(self) -> dict:
        """The report's JSON shape: `skipped`/`failed` hold the reason, absent fields are left out."""
        out = {"name": self.name, "dtype": self.dtype, "status": self.status}
        if self.variant:
            out["variant"] = self.variant
        if self.status != RAN:
            out[self.status] = self.reason
            return out
        out["label"] = self.label
        if self.load_s is not None:
            out["load_s"] = self.load_s
        out.update(self.extra)
        out["result"] = self.result
        for k in ("parity", "parity_vs_fp32_same_backend"):
            if getattr(self, k) is not None:
                out[k] = getattr(self, k)
        return out
