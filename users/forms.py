from typing import cast

from django import forms
from django.contrib.auth import authenticate
from django.contrib.auth.forms import UserCreationForm
from django.http import HttpRequest

from core.conf import recommender_settings
from users.models import RATING_MAX, ActivityKind, User

RATING_CHOICES = [("", "No rating")] + [(str(stars), f"{stars} stars") for stars in range(5, 0, -1)]


class SignUpForm(UserCreationForm):
    class Meta:
        model = User
        fields = ("username", "display_name")
        labels = {"display_name": "Name shown to others (optional)"}


class ItemWordsForm(forms.Form):
    """A review or a comment on one item, in the person's own words."""

    kind = forms.ChoiceField(
        choices=[(ActivityKind.REVIEW, "Review"), (ActivityKind.COMMENT, "Comment")],
        initial=ActivityKind.REVIEW,
        widget=forms.RadioSelect,
    )
    text = forms.CharField(label="Your words", widget=forms.Textarea(attrs={"rows": 4}), strip=True)
    rating = forms.TypedChoiceField(
        choices=RATING_CHOICES, coerce=float, empty_value=None, required=False, label="Rating"
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.CharField, self.fields["text"]).max_length = recommender_settings().max_text_length
        self.fields["text"].widget.attrs["maxlength"] = recommender_settings().max_text_length

    def clean_rating(self) -> float | None:
        rating = self.cleaned_data["rating"]
        if rating is not None and rating > RATING_MAX:
            raise forms.ValidationError("Ratings go up to 5 stars.")
        return rating


class AccountDeleteForm(forms.Form):
    """Deleting an account is final: the person confirms with their password.

    Checked through authenticate(), so wrong passwords here count toward the sign-in lockout
    (users/login_guard.py) like any other: a borrowed session cannot guess the password.
    """

    password = forms.CharField(
        label="Your password", widget=forms.PasswordInput(attrs={"autocomplete": "current-password"})
    )

    def __init__(self, *args, request: HttpRequest, user: User, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.request = request
        self.user = user

    def clean_password(self) -> str:
        password = self.cleaned_data["password"]
        if authenticate(self.request, username=self.user.get_username(), password=password) != self.user:
            raise forms.ValidationError("That is not your password.")
        return password
