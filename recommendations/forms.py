from typing import Any, cast

from django import forms

from recommendations.models import ExperimentSurface


class AskForm(forms.Form):
    """A question or a search in the person's own words (any language the encoder reads)."""

    q = forms.CharField(label="What are you looking for?", max_length=500, strip=True)


# Arms offered on the staff page's form; the service allows up to experiments.services.MAX_ARMS.
FORM_ARMS = 4
# An arm's version, one choice: "blend" or a ranker's id (personal recommendations), "frozen"
# or "text-<id>" (free text).
BLEND_CHOICE = "blend"
FROZEN_CHOICE = "frozen"
TEXT_MODEL_PREFIX = "text-"


def version_parse(version: str) -> tuple[int | None, int | None]:
    """(ranker id, text model id) of a version choice; (None, None) for the blend or the frozen encoder."""
    if version.startswith(TEXT_MODEL_PREFIX):
        return None, int(version.removeprefix(TEXT_MODEL_PREFIX))
    if version in (BLEND_CHOICE, FROZEN_CHOICE):
        return None, None
    return int(version), None


def _version_surface(version: str) -> str:
    return (
        ExperimentSurface.TEXT
        if version == FROZEN_CHOICE or version.startswith(TEXT_MODEL_PREFIX)
        else ExperimentSurface.USER
    )


class ExperimentForm(forms.Form):
    """A new experiment: its surface, time, plan and up to FORM_ARMS arms (arm 1 is the control).

    Each arm names one version from the list the surface reads: rankers (or the blend) for
    personal recommendations, text models (or the frozen encoder) for free text; a choice from
    the other list is a form error. Every other rule (shares sum to 100%, versions exist, are
    trained and have what they serve with, no overlap, the end after the start) is the
    service's, whose errors are shown on the form."""

    name = forms.CharField(max_length=200)
    surface = forms.ChoiceField(choices=())
    start_at = forms.DateTimeField(
        label="Start (UTC)", widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")
    )
    end_at = forms.DateTimeField(
        label="End (UTC)", widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")
    )
    minimum_effect = forms.FloatField(
        label="Minimum effect worth detecting (relative change of the click-through rate, 0.10 = 10%)", initial=0.10
    )
    alpha = forms.FloatField(label="Alpha (two-sided)", initial=0.05)
    power = forms.FloatField(label="Power", initial=0.80)
    attribution_hours = forms.IntegerField(label="Attribution window for add-to-cart and purchase (hours)", initial=24)

    def __init__(self, *args, surfaces: list[tuple[str, str]], versions: list[tuple[str, Any]], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["surface"]).choices = surfaces
        choices = [("", "(no arm)"), *versions]
        for index in range(FORM_ARMS):
            required = index < 2
            self.fields[f"arm{index}_name"] = forms.CharField(
                label=f"Arm {index + 1} name" + (" (the control)" if index == 0 else ""),
                max_length=100,
                required=required,
            )
            self.fields[f"arm{index}_version"] = forms.ChoiceField(
                label=f"Arm {index + 1} version", choices=choices, required=required
            )
            self.fields[f"arm{index}_share"] = forms.IntegerField(
                label=f"Arm {index + 1} share (%)", required=required, min_value=0, max_value=100
            )

    def arms(self) -> list[tuple[str, str, int]]:
        """(name, version choice, share) of each filled arm row, in order."""
        rows = []
        for index in range(FORM_ARMS):
            name = self.cleaned_data.get(f"arm{index}_name") or ""
            version = self.cleaned_data.get(f"arm{index}_version") or ""
            share = self.cleaned_data.get(f"arm{index}_share")
            if name or version or share:
                rows.append((name, version, share or 0))
        return rows

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        for index in range(FORM_ARMS):
            name, version = cleaned.get(f"arm{index}_name"), cleaned.get(f"arm{index}_version")
            share = cleaned.get(f"arm{index}_share")
            if (name or version or share) and not (name and version and share is not None):
                self.add_error(None, f"arm {index + 1}: give a name, a version and a share, or leave it empty")
            surface = cleaned.get("surface")
            if (
                version
                and surface in (ExperimentSurface.USER, ExperimentSurface.TEXT)
                and _version_surface(version) != surface
            ):
                self.add_error(
                    f"arm{index}_version",
                    f"arm {index + 1}: free text is answered by a text model: choose a text model version or the "
                    "frozen encoder, not a ranker"
                    if surface == ExperimentSurface.TEXT
                    else f"arm {index + 1}: personal recommendations are ordered by a ranker: choose a ranker version "
                    "or the blend, not a text model",
                )
        return cleaned
