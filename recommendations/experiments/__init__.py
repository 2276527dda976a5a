"""A/B experiments between versions: the plan and the test (statistics), the online metrics
from the logs (metrics), creation, promotion and stopping (services), the replay check (replay)
and simulated traffic for the example (simulation). Which arm serves a person is
recommendations.serving.arms."""
