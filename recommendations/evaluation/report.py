"""An evaluation's report: Markdown for people, PNG charts, and the EvaluationRun staff pages show.

Charts: metrics per method, NDCG by how active people were (P1), latency of each served
variant. matplotlib draws with its Agg backend (no display), imported only here.
"""

from __future__ import annotations

import base64
import io

from recommendations.models import EvaluationRun

CHART_NAMES = ("metrics", "activity_buckets", "latency")


def report_markdown(payload: dict, *, title: str) -> str:
    k = payload["k"]
    unit = "queries" if payload["protocol"] in ("p3", "bilingual") or payload["protocol"].startswith("p4") else "people"
    lines = [
        f"# {title}",
        "",
        f"{payload['n_users']} {unit} evaluated, {payload['n_items']} items ranked, "
        f"{payload['n_interactions']} interactions; dataset fingerprint {payload['fingerprint']}; "
        f"commit {payload.get('git_commit', 'unknown')}.",
        "",
        f"| method | Recall@{k} | NDCG@{k} | MRR | coverage | p50 ms | p99 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for method in payload["methods"]:
        latency = (
            (method["latency_p50_ms"], method["latency_p99_ms"])
            if payload.get("latencies", {}).get(method["method"])
            else ("—", "—")
        )
        lines.append(
            f"| {method['method']} | {method['recall']:.4f} | {method['ndcg']:.4f} | {method['mrr']:.4f} | "
            f"{method['coverage']:.3f} | {latency[0]} | {latency[1]} |"
        )
    if payload.get("buckets"):
        names = [
            method["method"] for method in payload["methods"] if payload.get("latencies", {}).get(method["method"])
        ]
        lines += ["", f"NDCG@{k} by train interactions per person:", ""]
        lines.append("| interactions | people | " + " | ".join(names) + " |")
        lines.append("|---|---|" + "---|" * len(names))
        for bucket in payload["buckets"]:
            values = " | ".join("—" if bucket.get(name) is None else f"{bucket[name]:.4f}" for name in names)
            lines.append(f"| {bucket['bucket']} | {bucket['people']} | {values} |")
    if payload.get("breakdown"):
        lines += _breakdown_markdown(payload)
    rankers = (payload.get("models") or {}).get("rankers") or []
    if rankers:
        lines += ["", "Re-ranker versions trained from the train part (validation: its latest people):", ""]
        for ranker in rankers:
            metrics = ranker["validation_metrics"]
            ndcg = next((value for key, value in metrics.items() if key.startswith("ndcg@")), None)
            sources = ", ".join(f"{name} {value}" for name, value in metrics.get("single_sources", {}).items())
            lines.append(
                f"- v{ranker['version']} {ranker['algorithm']}{' (active)' if ranker['is_active'] else ''}: "
                f"validation NDCG {ndcg}; single sources {sources}; blend {metrics.get('blend')}"
                + _warm_and_cold(metrics)
            )
    text_models = (payload.get("models") or {}).get("text_models") or []
    if text_models:
        lines += [
            "",
            "Text model versions trained from what the protocol imports (validation: its latest questions):",
            "",
        ]
        for text_model in text_models:
            metrics = text_model["validation_metrics"]
            ndcg = next((value for key, value in metrics.items() if key.startswith("ndcg@")), None)
            frozen = next((value for key, value in metrics.items() if key.startswith("frozen_ndcg@")), None)
            active = " (active)" if text_model["is_active"] else ""
            lines.append(
                f"- v{text_model['version']} {text_model['algorithm']}{active}: "
                f"validation NDCG {ndcg}, frozen encoder {frozen}, on {metrics.get('validation_questions')} "
                f"questions; pairs {text_model['training_pairs']}; best epoch {metrics.get('best_epoch')}, "
                f"refit {metrics.get('refit_epochs')}; {metrics.get('hyper_parameters')}; "
                f"seconds {metrics.get('seconds')}; {text_model['notes']}"
            )
    lines += ["", "Seconds: " + ", ".join(f"{name} {value}" for name, value in payload["seconds"].items())]
    return "\n".join(lines) + "\n"


def _warm_and_cold(metrics: dict) -> str:
    """The validation apart on warm groups and on the groups of items made cold (versions since #14)."""
    cold = next((value for key, value in metrics.items() if key.startswith("cold_ndcg@")), None)
    if cold is None:
        return ""
    warm = next((value for key, value in metrics.items() if key.startswith("warm_ndcg@")), None)
    semantic = (metrics.get("single_sources_cold") or {}).get("semantic")
    return (
        f"; warm groups {warm}, cold groups {cold} (semantic alone {semantic}); "
        f"{metrics.get('refit_people')} people, {metrics.get('cold_items')} items made cold"
    )


def _breakdown_markdown(payload: dict) -> list[str]:
    """The bilingual protocol's figures (one table per split and method), or P3's on its
    validation queries (one table)."""
    lines = []
    rows = payload["breakdown"]
    if "ndcg" in rows[0]:
        k = payload["k"]
        lines += ["", f"On the {rows[0]['group']} alone ({rows[0]['split']}, {rows[0]['queries']} queries):", ""]
        lines += [f"| method | Recall@{k} | NDCG@{k} |", "|---|---|---|"]
        lines += [f"| {row['method']} | {row['recall']:.4f} | {row['ndcg']:.4f} |" for row in rows]
        return lines
    if "match_floor" in payload:
        lines += ["", f"Match floor of the serving model's card: {payload.get('match_floor')}."]
    for split in dict.fromkeys(row["split"] for row in rows):
        for method in dict.fromkeys(row["method"] for row in rows):
            chosen = [row for row in rows if row["split"] == split and row["method"] == method]
            lines += [
                "",
                f"{method}, {split} questions (no-match: for answerable groups the share wrongly told nothing "
                "is close; for kind none the share rightly told so):",
                "",
                "| group | questions | hit@1 | hit@5 | MRR@10 | no-match |",
                "|---|---|---|---|---|---|",
            ]
            for row in chosen:
                figures = " | ".join(
                    "—" if row.get(name) is None else f"{row[name]:.3f}" for name in ("hit@1", "hit@5", "mrr@10")
                )
                lines.append(f"| {row['group']} | {row['queries']} | {figures} | {row['no_match']:.3f} |")
    return lines


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def report_charts(payload: dict) -> dict[str, bytes]:
    """name -> PNG bytes (a chart is left out when the report has nothing for it)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    charts: dict[str, bytes] = {}
    k = payload["k"]
    methods = payload["methods"]
    names = [method["method"] for method in methods]

    figure, axes = pyplot.subplots(figsize=(9, 0.45 * len(names) + 1.5))
    positions = range(len(names))
    axes.barh([p + 0.2 for p in positions], [m["ndcg"] for m in methods], height=0.4, label=f"NDCG@{k}")
    axes.barh([p - 0.2 for p in positions], [m["recall"] for m in methods], height=0.4, label=f"Recall@{k}")
    axes.set_yticks(list(positions), names, fontsize=8)
    axes.invert_yaxis()
    axes.legend(loc="lower right")
    axes.set_title(f"{payload['protocol'].upper()}: metrics per method")
    charts["metrics"] = _png(figure)
    pyplot.close(figure)

    latencies = payload.get("latencies") or {}
    served = [name for name in names if latencies.get(name)]
    if payload.get("buckets") and served:
        buckets = payload["buckets"]
        figure, axes = pyplot.subplots(figsize=(9, 4))
        width = 0.8 / len(served)
        for index, name in enumerate(served):
            axes.bar(
                [position + index * width for position in range(len(buckets))],
                [bucket.get(name) or 0.0 for bucket in buckets],
                width=width,
                label=name,
            )
        axes.set_xticks(
            [position + 0.4 - width / 2 for position in range(len(buckets))],
            [f"{bucket['bucket']}\n({bucket['people']} people)" for bucket in buckets],
            fontsize=8,
        )
        axes.set_ylabel(f"NDCG@{k}")
        axes.set_xlabel("train interactions per person")
        axes.legend(fontsize=7)
        axes.set_title("NDCG by how active people were")
        charts["activity_buckets"] = _png(figure)
        pyplot.close(figure)
    if served:
        figure, axes = pyplot.subplots(figsize=(9, 0.45 * len(served) + 1.5))
        axes.boxplot([latencies[name] for name in served], orientation="horizontal", showfliers=False)
        axes.set_yticks(range(1, len(served) + 1), served, fontsize=8)
        axes.invert_yaxis()
        axes.set_xlabel("ms per answer (whiskers: 1.5 IQR)")
        axes.set_title("Latency of the served variants")
        charts["latency"] = _png(figure)
        pyplot.close(figure)
    return charts


def evaluation_run_save(*, payload: dict, markdown: str, charts: dict[str, bytes]) -> EvaluationRun:
    """Keep the run for the staff pages (figures without per-answer latencies: they are long)."""
    figures = {key: value for key, value in payload.items() if key != "latencies"}
    return EvaluationRun.objects.create(
        protocol=payload["protocol"],
        dataset=payload.get("bundle", ""),
        git_commit=payload.get("git_commit", ""),
        figures=figures,
        report_markdown=markdown,
        charts={name: base64.b64encode(png).decode() for name, png in charts.items()},
    )
