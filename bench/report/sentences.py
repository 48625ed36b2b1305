"""The "What the numbers say" bullets: comparisons computed from the summary and the rows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from bench.report import figures
from bench.report.formatting import fmt_frac, fmt_num, fmt_pct, missing, ratio, share
from bench.report.runs import device_peaks, session_meta
from bench.report.summary import failed_mask


def comparison_sentences(
    summary: pd.DataFrame,
    shares: pd.DataFrame,
    results: pd.DataFrame,
    metas: Sequence[Mapping[str, Any]],
    devices: Sequence[str],
) -> list[str]:
    """Comparisons the numbers support, each computed from the rows; missing inputs skip one."""
    out: list[str] = []
    by_model = summary.set_index("model") if not summary.empty else summary
    share_by = shares.set_index("model") if not shares.empty else shares

    def number(model: str, column: str) -> float | None:
        if model not in by_model.index:
            return None
        value = by_model.loc[model, column]
        return None if missing(value) or isinstance(value, str) else float(value)

    def fc_clause(model: str) -> str:
        if model not in share_by.index or missing(share_by.loc[model, "params_fc_pct"]):
            return ""
        return (
            f"; {share(share_by.loc[model, 'params_fc_pct'])} of its parameters are in the "
            "classifier (Linear layers)"
        )

    # The headline pair: the biggest model against the canonical modern one, if both are here.
    sized = [m for m in by_model.index if number(m, "params") and number(m, "macs")]
    pair = None
    if "vgg16" in sized and "resnet34" in sized:
        pair = ("vgg16", "resnet34")
    elif len(sized) >= 2:
        biggest = max(sized, key=lambda m: (number(m, "params"), m))
        others = [m for m in sized if m != biggest]
        pair = (biggest, max(others, key=lambda m: (number(m, "macs"), m)))
    if pair:
        a, b = pair
        out.append(
            f"{a} has {ratio(number(a, 'params'), number(b, 'params'))} the parameters "
            f"of {b} and {ratio(number(a, 'macs'), number(b, 'macs'))} its MACs"
            f"{fc_clause(a)}."
        )

    if not shares.empty:
        fc = shares.dropna(subset=["params_fc_pct"])
        if len(fc) >= 2:
            most = fc.sort_values(["params_fc_pct", "model"], ascending=[False, True]).iloc[0]
            least = fc.sort_values(["params_fc_pct", "model"]).iloc[0]
            if most["model"] != least["model"]:
                if not pair or most["model"] != pair[0]:
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
            top = big.sort_values(
                ["largest_layer_params_pct", "model"], ascending=[False, True]
            ).iloc[0]
            out.append(
                f"The single largest layer is {top['model']}'s {top['largest_layer']} "
                f"({top['largest_layer_type']}): {share(top['largest_layer_params_pct'])} "
                "of that model's parameters."
            )

    for device in devices:
        for mode, verb in (("infer", "infers"), ("train", "trains")):
            col = f"{device}_{mode}_samples_per_s"
            if col not in summary.columns:
                continue
            ok = summary[summary[col].map(lambda v: not missing(v) and not isinstance(v, str))]
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

    act = summary[
        summary["activations_mib_per_sample"].map(
            lambda v: not missing(v) and not isinstance(v, str)
        )
    ]
    if not act.empty:
        top = (
            act.assign(_v=act["activations_mib_per_sample"].astype(float))
            .sort_values(["_v", "model"], ascending=[False, True])
            .iloc[0]
        )
        weights = top["weights_mib"]
        tail = (
            f", against {fmt_num(weights)} MiB of weights"
            if not missing(weights) and not isinstance(weights, str)
            else ""
        )
        out.append(
            f"{top['model']} saves the most activations for backward: "
            f"{fmt_num(top['_v'])} MiB per sample{tail}."
        )

    out += _peak_sentences(results, metas, devices)
    out += _accuracy_sentences(results)

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

    failed = failed_mask(results)
    if failed.any():
        dead = sorted(set(results.loc[failed, "model"]) - set(results.loc[~failed, "model"]))
        text = f"{int(failed.sum())} of {len(results)} rows failed (see Errors)"
        if dead:
            text += f"; {', '.join(dead)} {'has' if len(dead) == 1 else 'have'} no successful row"
        out.append(text + ".")
    return out


def _peak_sentences(
    results: pd.DataFrame, metas: Sequence[Mapping[str, Any]], devices: Sequence[str]
) -> list[str]:
    out = []
    ok = results[
        ~failed_mask(results)
        & results["achieved_gflops"].notna()
        & results["mode"].isin(["infer", "train"])
    ]
    meta_by_run = {str(m.get("run_id")): m for m in metas}
    for device in devices:
        for dtype_name, is_bf16 in (("fp32", False), ("bf16", True)):
            part = ok[
                (ok["device"] == device) & (ok["dtype"].astype(str).str.contains("bf16") == is_bf16)
            ]
            if part.empty:
                continue
            best = part.sort_values(
                ["achieved_gflops", "model", "batch_size"],
                ascending=[False, True, True],
                kind="mergesort",
            ).iloc[0]
            meta = session_meta(meta_by_run.get(str(best["run"]), {}), best["session"])
            ref = figures.reference_peak(device_peaks(meta, device), dtype_name)
            if ref is None:
                continue
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
                f"{key.replace('_', ' ')} peak of {fmt_num(peak)} GFLOP/s"
            )
            worst_meta = session_meta(meta_by_run.get(str(worst["run"]), {}), worst["session"])
            worst_ref = figures.reference_peak(device_peaks(worst_meta, device), dtype_name)
            if worst["model"] != best["model"] and worst_ref == ref:  # judged by the same peak
                worst_share = share(100 * worst["achieved_gflops"] / peak)
                text += (
                    f"; {worst['model']} reaches {worst_share} at best "
                    f"({worst['mode']}, batch {int(worst['batch_size'])})"
                )
            out.append(text + ".")
    return out


def _accuracy_sentences(results: pd.DataFrame) -> list[str]:
    out = []
    acc = results[(results["mode"] == "accuracy") & ~failed_mask(results)]
    for data in sorted(acc["data"].dropna().astype(str).unique()):
        part = acc[acc["data"].astype(str) == data]
        stats = []
        for model in sorted(part["model"].unique()):
            rows = part[part["model"] == model]
            reached = rows["time_to_target_s"].dropna()
            stats.append(
                (
                    model,
                    float(reached.median()) if not reached.empty else None,
                    len(reached),
                    len(rows),
                    rows["target_acc"].dropna(),
                )
            )
        fast = sorted((s for s in stats if s[1] is not None), key=lambda s: (s[1], s[0]))
        if not fast:
            continue
        model, median, n, total, targets = fast[0]
        target = fmt_frac(targets.iloc[0]) if not targets.empty else "the target"
        text = (
            f"On {data}, {model} reaches {target} test accuracy fastest: "
            f"{fmt_num(median)} s (median of the {n} of {total} seeds that reached it)"
        )
        for other, other_median, _, other_total, _ in stats:
            if other == model:
                continue
            if other_median is None:
                text += f"; {other} did not reach it ({other_total} seed{'s' * (other_total != 1)})"
            else:
                text += f"; {other} takes {fmt_num(other_median)} s"
        out.append(text + ".")
    return out
