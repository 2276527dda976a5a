from django import forms


class AskForm(forms.Form):
    """A question or a search in the person's own words (any language the encoder reads)."""

    q = forms.CharField(label="What are you looking for?", max_length=500, strip=True)
