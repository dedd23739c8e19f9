"""The accuracy report as the plain-text table `janusweb quantize` prints."""

from janusweb.quantize.task_quality import lines as task_lines


def table(report: dict) -> str:
    """The report as a plain-text table (what `janusweb quantize` prints)."""
    lines = [f"{report['dtype']} vs fp32 ({report['weights_note']})",
             f"{'graph':<22} {'bytes':>13} {'fp32 bytes':>13} {'max abs diff':>13} {'cosine':>10} {'ids':>7}  "
             "quantized"]
    for name, g in report["graphs"].items():
        ids = f"{g['ids_agreement']:.1%}" if "ids_agreement" in g else "-"
        diff, cos = g.get("max_abs_diff"), g.get("cosine")
        diff = "-" if diff is None else f"{diff:.3e}"
        cos = "-" if cos is None else f"{cos:.6f}"
        lines.append(f"{name:<22} {g['bytes']:>13,} {g['fp32_bytes']:>13,} {diff:>13} {cos:>10} {ids:>7}  "
                     f"{g['quantized']}")
    lines.append(f"{'total':<22} {report['bytes']:>13,} {report['fp32_bytes']:>13,}")
    e = report.get("end_to_end")
    if e:
        t, f, i = e["text"], e["teacher_forced"], e["image"]
        p = e["image_decode_psnr_db"]
        lines += [
            f"greedy text after an image prompt: {t['agreement']:.1%} of {t['steps']} tokens agree, "
            f"first divergence {t['first_divergence']}",
            f"teacher-forced, {f['positions']} positions: top-1 agreement {f['top1_agreement']:.1%}, "
            f"mean KL {f['mean_kl']:.3e} (max {f['max_kl']:.3e})",
            f"CFG image tokens: {i['agreement']:.1%} of {i['steps']} agree, first divergence {i['first_divergence']}",
            f"image_decode alone, PSNR vs fp32 decode: {'identical' if p is None else f'{p:.1f} dB'}",
        ]
        c = e.get("conv_int8_simulated")
        if c:
            lines.append(f"(not shipped) VQ decoder's {c['convolutions']} convolutions with 8-bit per-channel weights: "
                         f"PSNR {c['psnr_db']:.1f} dB vs fp32")
    lines += task_lines(report)
    return "\n".join(lines)
