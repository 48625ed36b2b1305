"""The "What the numbers say" bullets: comparisons computed from the summary and the rows."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd

from bench.report.formatting import fmt_frac, fmt_num, fmt_pct, missing, ratio, share
from bench.report.runs import PeakSpread, reference_peak, row_peaks, row_spreads, spread_text
from bench.report.summary import failed_mask, training_runs


def comparison_sentences(
    summary: pd.DataFrame,
    shares: pd.DataFrame,
    results: pd.DataFrame,
    metas: Sequence[Mapping[str, Any]],
    devices: Sequence[str],
) -> list[str]:
    """Comparisons the numbers support, each computed from the rows; missing inputs skip one."""
    pair = _headline_pair(summary)
    return [
        *_pair_sentences(summary, shares, pair),
        *_layer_share_sentences(shares, pair),
        *_throughput_sentences(summary, devices),
        *_activation_sentences(summary),
        *_peak_sentences(results, metas, devices),
        *_accuracy_sentences(results),
        *_paper_sentences(summary),
        *_failure_sentences(results),
    ]


def headline_sentences(summary: pd.DataFrame, shares: pd.DataFrame) -> list[str]:
    """The headline pair's parameters and MACs against each other (VGG-16 and ResNet-34)."""
    return _pair_sentences(summary, shares, _headline_pair(summary))


def accuracy_sentences(results: pd.DataFrame) -> list[str]:
    """Per data set, the model that reaches the target fastest against the others."""
    return _accuracy_sentences(results)


def _is_number(value: Any) -> bool:
    """A measured number: not blank and not the summary's ``"error"`` mark."""
    return not missing(value) and not isinstance(value, str)


def _number(summary: pd.DataFrame, model: str, column: str) -> float | None:
    """``column`` of ``model``'s summary row as a float; None if blank, "error" or no row."""
    values = summary.loc[summary["model"] == model, column] if not summary.empty else []
    if len(values) == 0 or not _is_number(values.iloc[0]):
        return None
    return float(values.iloc[0])


def _headline_pair(summary: pd.DataFrame) -> tuple[str, str] | None:
    """The biggest model and the canonical modern one (VGG-16 and ResNet-34 when both are
    here; else the most parameters against the most MACs of the rest); None under two."""
    sized = [
        m
        for m in (summary["model"] if not summary.empty else [])
        if _number(summary, m, "params") and _number(summary, m, "macs")
    ]
    if "vgg16" in sized and "resnet34" in sized:
        return ("vgg16", "resnet34")
    if len(sized) < 2:
        return None
    biggest = max(sized, key=lambda m: (_number(summary, m, "params"), m))
    others = [m for m in sized if m != biggest]
    return (biggest, max(others, key=lambda m: (_number(summary, m, "macs"), m)))


def _pair_sentences(
    summary: pd.DataFrame, shares: pd.DataFrame, pair: tuple[str, str] | None
) -> list[str]:
    if not pair:
        return []
    a, b = pair
    fc_clause = ""
    fc = shares.loc[shares["model"] == a, "params_fc_pct"] if not shares.empty else []
    if len(fc) and not missing(fc.iloc[0]):
        fc_clause = f"; {share(fc.iloc[0])} of its parameters are in the classifier (Linear layers)"
    params = ratio(_number(summary, a, "params"), _number(summary, b, "params"))
    macs = ratio(_number(summary, a, "macs"), _number(summary, b, "macs"))
    return [f"{a} has {params} the parameters of {b} and {macs} its MACs{fc_clause}."]


def _layer_share_sentences(shares: pd.DataFrame, pair: tuple[str, str] | None) -> list[str]:
    """The models with the most and the least of their parameters in Linear layers, and the
    single largest layer."""
    if shares.empty:
        return []
    out = []
    fc = shares.dropna(subset=["params_fc_pct"])
    if len(fc) >= 2:
        most = fc.sort_values(["params_fc_pct", "model"], ascending=[False, True]).iloc[0]
        least = fc.sort_values(["params_fc_pct", "model"]).iloc[0]
        if most["model"] != least["model"]:
            if not pair or most["model"] != pair[0]:  # the headline already said it
                out.append(
                    f"{most['model']} keeps {share(most['params_fc_pct'])} of its "
                    "parameters in its fully connected (Linear) layers."
                )
            out.append(
                f"{least['model']} keeps {share(least['params_conv_pct'])} of its "
                f"parameters in conv layers and only {share(least['params_fc_pct'])} "
                f"in Linear layers, while its convs do "
                f"{share(least['macs_conv_pct'])} of its MACs."
            )
    big = shares.dropna(subset=["largest_layer_params_pct"])
    if not big.empty:
        by_size = big.sort_values(["largest_layer_params_pct", "model"], ascending=[False, True])
        top = by_size.iloc[0]
        out.append(
            f"The single largest layer is {top['model']}'s {top['largest_layer']} "
            f"({top['largest_layer_type']}): {share(top['largest_layer_params_pct'])} "
            "of that model's parameters."
        )
    return out


def _throughput_sentences(summary: pd.DataFrame, devices: Sequence[str]) -> list[str]:
    """Per device and mode, the fastest and the slowest model at their best batch."""
    out = []
    for device in devices:
        for mode, verb in (("infer", "infers"), ("train", "trains")):
            col = f"{device}_{mode}_samples_per_s"
            if col not in summary.columns:
                continue
            ok = summary[summary[col].map(_is_number)]
            if len(ok) < 2:
                continue
            ok = ok.assign(_v=ok[col].astype(float)).sort_values(
                ["_v", "model"], ascending=[False, True]
            )
            fast, slow = ok.iloc[0], ok.iloc[-1]
            out.append(
                f"On {device}, {fast['model']} {verb} fastest: {fmt_num(fast['_v'])} "
                f"samples/s (batch {int(fast[f'{device}_{mode}_batch'])}); "
                f"{slow['model']} is slowest at {fmt_num(slow['_v'])} samples/s "
                f"(batch {int(slow[f'{device}_{mode}_batch'])}), "
                f"{ratio(fast['_v'], slow['_v'])} fewer."
            )
    return out


def _activation_sentences(summary: pd.DataFrame) -> list[str]:
    act = summary[summary["activations_mib_per_sample"].map(_is_number)]
    if act.empty:
        return []
    top = (
        act.assign(_v=act["activations_mib_per_sample"].astype(float))
        .sort_values(["_v", "model"], ascending=[False, True])
        .iloc[0]
    )
    weights = top["weights_mib"]
    tail = f", against {fmt_num(weights)} MiB of weights" if _is_number(weights) else ""
    return [
        f"{top['model']} saves the most activations for backward: "
        f"{fmt_num(top['_v'])} MiB per sample{tail}."
    ]


def _peak_sentences(
    results: pd.DataFrame, metas: Sequence[Mapping[str, Any]], devices: Sequence[str]
) -> list[str]:
    """Per device and precision, the best rate against its peak and the model farthest below."""
    out = []
    ok = results[
        ~failed_mask(results)
        & results["achieved_gflops"].notna()
        & results["mode"].isin(["infer", "train"])
    ]
    peaks_of, spreads_of = row_peaks(metas), row_spreads(metas)
    for device in devices:
        for dtype_name, is_bf16 in (("fp32", False), ("bf16", True)):
            part = ok[
                (ok["device"] == device) & (ok["dtype"].astype(str).str.contains("bf16") == is_bf16)
            ]
            if not part.empty:
                out += _peak_sentence(part, device, dtype_name, peaks_of, spreads_of)
    return out


def _peak_sentence(
    part: pd.DataFrame,
    device: str,
    dtype_name: str,
    peaks_of: Callable[[Mapping[str, Any]], Mapping[str, float]],
    spreads_of: Callable[[Mapping[str, Any]], Mapping[str, PeakSpread]],
) -> list[str]:
    """The sentence of one device and precision (``part``: its error-free rows), the peak's
    spread over its repeats beside it; none if the session of the best row measured no
    peak."""
    best = part.sort_values(
        ["achieved_gflops", "model", "batch_size"],
        ascending=[False, True, True],
        kind="mergesort",
    ).iloc[0]
    ref = reference_peak(peaks_of(best), dtype_name)
    if ref is None:
        return []
    key, peak = ref
    # The model whose best rate is lowest: how far the small networks stay from the peak.
    per_model = (
        part.sort_values(
            ["achieved_gflops", "batch_size"], ascending=[False, True], kind="mergesort"
        )
        .groupby("model", sort=True)
        .head(1)
    )
    worst = per_model.sort_values(["achieved_gflops", "model"], kind="mergesort").iloc[0]
    best_share = share(100 * best["achieved_gflops"] / peak)
    text = (
        f"On {device}, the best {best['dtype']} rate is "
        f"{fmt_num(best['achieved_gflops'])} GFLOP/s ({best['model']}, {best['mode']}, "
        f"batch {int(best['batch_size'])}): {best_share} of the measured "
        f"{key.replace('_', ' ')} peak of {fmt_num(peak)} GFLOP/s "
        f"({spread_text(spreads_of(best).get(key))})"
    )
    worst_ref = reference_peak(peaks_of(worst), dtype_name)
    if worst["model"] != best["model"] and worst_ref == ref:  # judged by the same peak
        worst_share = share(100 * worst["achieved_gflops"] / peak)
        text += (
            f"; {worst['model']} reaches {worst_share} at best "
            f"({worst['mode']}, batch {int(worst['batch_size'])})"
        )
    return [text + "."]


def _paper_sentences(summary: pd.DataFrame) -> list[str]:
    """How our parameter and MAC counts compare with the papers'."""
    out = []
    with_paper = summary[summary["params_diff_pct"].notna()]
    if not with_paper.empty:
        exact = with_paper[with_paper["params_diff_pct"].abs() < 1e-9]
        text = (
            f"Our parameter counts equal the paper's for {len(exact)} of {len(with_paper)} "
            "models with a published count"
        )
        off = with_paper.drop(exact.index).sort_values("model")
        if not off.empty:
            text += "; they differ for " + ", ".join(
                f"{m} ({fmt_pct(d, signed=True)})"
                for m, d in zip(off["model"], off["params_diff_pct"])
            )
        out.append(text + ".")
    macs = summary[summary["macs_diff_pct"].notna()].sort_values("model")
    if not macs.empty:
        out.append(
            "MACs against the paper: "
            + ", ".join(
                f"{m} {fmt_pct(d, signed=True)}"
                for m, d in zip(macs["model"], macs["macs_diff_pct"])
            )
            + " (the papers round, and some count only the conv layers; see their notes)."
        )
    return out


def _failure_sentences(results: pd.DataFrame) -> list[str]:
    failed = failed_mask(results)
    if not failed.any():
        return []
    dead = sorted(set(results.loc[failed, "model"]) - set(results.loc[~failed, "model"]))
    text = f"{int(failed.sum())} of {len(results)} rows failed (see Errors)"
    if dead:
        text += f"; {', '.join(dead)} {'has' if len(dead) == 1 else 'have'} no successful row"
    return [text + "."]


def _accuracy_sentences(results: pd.DataFrame) -> list[str]:
    """Per data set and target, the model that reaches it fastest against the others: models
    timed to different targets (each recipe's own, below its network's ceiling) are not
    ranked against each other."""
    out = []
    acc = training_runs(results[~failed_mask(results)])
    for data in sorted(acc["data"].dropna().astype(str).unique()):
        part = acc[acc["data"].astype(str) == data]
        targets = sorted(part["target_acc"].dropna().astype(float).unique(), reverse=True)
        for target in targets:
            timed = part[part["target_acc"].astype(float) == target]
            sentence = _fastest_sentence(data, fmt_frac(target), timed)
            if sentence:
                out.append(sentence)
    return out


def _fastest_sentence(data: str, target: str, rows: pd.DataFrame) -> str | None:
    """ "On DATA, MODEL reaches TARGET fastest: …; OTHER takes …" over ``rows`` (accuracy rows
    timed to one target); None where none reached it."""
    stats = []
    for model in sorted(rows["model"].unique()):
        mine = rows[rows["model"] == model]
        reached = mine["time_to_target_s"].dropna()
        median = float(reached.median()) if not reached.empty else None
        stats.append((model, median, len(reached), len(mine)))
    fast = sorted((s for s in stats if s[1] is not None), key=lambda s: (s[1], s[0]))
    if not fast:
        return None
    model, median, n, total = fast[0]
    text = (
        f"On {data}, {model} reaches {target} test accuracy fastest: "
        f"{fmt_num(median)} s (median of the {n} of {total} seeds that reached it)"
    )
    for other, other_median, _, other_total in stats:
        if other == model:
            continue
        if other_median is None:
            text += f"; {other} did not reach it ({other_total} seed{'s' * (other_total != 1)})"
        else:
            text += f"; {other} takes {fmt_num(other_median)} s"
    return text + "."
