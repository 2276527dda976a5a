from django.core.management.base import BaseCommand

from recommendations.experiments import statistics
from recommendations.experiments.simulation import SimulatedArm, calibration_run, traffic_simulate


class Command(BaseCommand):
    help = (
        "Check the experiments' test on simulated people (no database): how often a known lift is found "
        "at the planned sample size (the power), and how often equal arms are called different (alpha)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--runs", type=int, default=400)
        parser.add_argument("--control-rate", type=float, default=0.10)
        parser.add_argument("--lift", type=float, default=0.20, help="the treatment's relative lift")
        parser.add_argument("--alpha", type=float, default=0.05)
        parser.add_argument("--power", type=float, default=0.80)

    def handle(self, *args, runs: int, control_rate: float, lift: float, alpha: float, power: float, **options):
        pilot = traffic_simulate([SimulatedArm(1, 4_000, control_rate)], first_day=0, days=14, seed=10_000)
        design = statistics.design_effect(statistics.ratio_estimate(pilot.clicks, pilot.shown, alpha=alpha))
        needed = statistics.impressions_needed(
            baseline_rate=control_rate, minimum_effect=lift, alpha=alpha, power=power, design_effect=design
        )
        people = int(needed / 10 * 1.05) + 1
        self.stdout.write(f"plan: {needed} impressions per arm (design effect {design:.2f}), {people} people per arm")
        for name, effect in (("lift", lift), ("null", 0.0)):
            found = calibration_run(
                control_rate=control_rate,
                lift=effect,
                people_per_arm=people,
                runs=runs,
                alpha=alpha,
                power=power,
                minimum_effect=lift,
            )
            self.stdout.write(
                f"{name}: {runs} runs, treatment declared better {found.detected:.3f}, control declared better "
                f"{found.backwards:.3f}, interval holds the truth {found.interval_coverage:.3f}"
            )
