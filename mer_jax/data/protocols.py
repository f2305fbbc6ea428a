"""Evaluation protocols: which emotion of which database becomes which class.

A protocol knows the whole emotion vocabulary of every database it covers, so an
emotion is either mapped to a class, deliberately excluded (`label_of` returns None,
e.g. CASME II "fear" in the 5-class protocol) or unknown, which is an error: a
misspelt label must never silently drop clips.

Emotions are matched case- and whitespace-insensitively ("Happiness ", "happiness").

The synthetic database (`mer_jax.synthetic`, dataset "synthetic_me") mimics CASME II
and writes CASME II emotions, so every protocol that covers "casme2" maps it the same way.
"""

from collections.abc import Mapping
from dataclasses import dataclass

from mer_jax.errors import UserError


def normalize_emotion(emotion: str) -> str:
    """Lower case, single spaces, no surrounding whitespace."""
    return " ".join(emotion.split()).lower()


@dataclass(frozen=True)
class Protocol:
    """A label mapping.

    Attributes:
        name: registry name, e.g. "casme2_5class".
        class_names: class names in label order (label i is class_names[i]).
        vocabularies: database name -> normalized emotion -> label, or None where
            the protocol excludes that emotion.
        description: what the protocol is and where it comes from.
    """

    name: str
    class_names: tuple[str, ...]
    vocabularies: Mapping[str, Mapping[str, int | None]]
    description: str

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)

    @property
    def datasets(self) -> tuple[str, ...]:
        """The databases this protocol covers."""
        return tuple(self.vocabularies)

    def label_of(self, dataset: str, emotion: str) -> int | None:
        """The class of an emotion of a database, or None if the protocol excludes it.

        Raises:
            UserError: the protocol does not cover the database, or the emotion is not
                in the database's vocabulary; the message lists what is known.
        """
        vocabulary = self.vocabularies.get(dataset)
        if vocabulary is None:
            raise UserError(
                f"protocol {self.name} has no label mapping for dataset {dataset!r}; "
                f"it covers {', '.join(self.datasets)}"
            )
        key = normalize_emotion(emotion)
        if key not in vocabulary:
            raise UserError(
                f"protocol {self.name}: emotion {emotion!r} is not in the {dataset} "
                f"vocabulary ({', '.join(sorted(vocabulary))}); fix the label or the protocol"
            )
        return vocabulary[key]


def _vocabulary(
    classes: Mapping[str, int], excluded: tuple[str, ...] = ()
) -> dict[str, int | None]:
    vocabulary: dict[str, int | None] = dict(classes)
    vocabulary.update(dict.fromkeys(excluded))
    return vocabulary


def _with_synthetic(casme2: dict[str, int | None]) -> dict[str, dict[str, int | None]]:
    return {"casme2": casme2, "synthetic_me": casme2}


# Negative / positive / surprise of MEGC 2019, for SMIC under both the full names and
# the abbreviations of its folder names.
_SMIC_3CLASS = _vocabulary(
    {"negative": 0, "ne": 0, "positive": 1, "po": 1, "surprise": 2, "sur": 2}
)

# The seven emotions of CAS(ME)^3 ("happy", "sad", ... in its sheet) and MMEW
# ("happiness", "sadness", ...), under both spellings: emotion -> 7-class label.
_SEVEN_EMOTIONS = ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "others")
_SPELLINGS = {
    "anger": ("anger", "angry"),
    "disgust": ("disgust",),
    "fear": ("fear",),
    "happiness": ("happiness", "happy"),
    "sadness": ("sadness", "sad"),
    "surprise": ("surprise",),
    "others": ("others", "other"),
}
# 4 classes: the negative emotions pooled, as MEGC pools them for the composite.
_FOUR_CLASS_OF = {
    "anger": 0,
    "disgust": 0,
    "fear": 0,
    "sadness": 0,
    "happiness": 1,
    "surprise": 2,
    "others": 3,
}


def _spelled(class_of: dict[str, int]) -> dict[str, int | None]:
    return {
        spelling: class_of[emotion]
        for emotion in _SEVEN_EMOTIONS
        for spelling in _SPELLINGS[emotion]
    }


_SEVEN_CLASS = _spelled({emotion: i for i, emotion in enumerate(_SEVEN_EMOTIONS)})
_FOUR_CLASS = _spelled(_FOUR_CLASS_OF)

PROTOCOLS: dict[str, Protocol] = {
    protocol.name: protocol
    for protocol in (
        Protocol(
            name="casme2_5class",
            class_names=("happiness", "disgust", "repression", "surprise", "others"),
            vocabularies=_with_synthetic(
                _vocabulary(
                    {"happiness": 0, "disgust": 1, "repression": 2, "surprise": 3, "others": 4},
                    excluded=("sadness", "fear"),
                )
            ),
            description=(
                "CASME II 5 classes (Yan et al. 2014); sadness (7) and fear (2) are too rare "
                "and excluded: 246 of 255 clips."
            ),
        ),
        Protocol(
            name="samm_5class",
            class_names=("anger", "contempt", "happiness", "surprise", "other"),
            vocabularies={
                "samm": _vocabulary(
                    {"anger": 0, "contempt": 1, "happiness": 2, "surprise": 3, "other": 4},
                    excluded=("disgust", "fear", "sadness"),
                )
            },
            description=(
                "SAMM 5 classes (classes with at least 10 clips); disgust, fear and sadness "
                "are excluded: 136 of 159 clips."
            ),
        ),
        Protocol(
            name="megc2019_3class",
            class_names=("negative", "positive", "surprise"),
            vocabularies={
                **_with_synthetic(
                    _vocabulary(
                        {"disgust": 0, "repression": 0, "happiness": 1, "surprise": 2},
                        excluded=("others", "fear", "sadness"),
                    )
                ),
                "samm": _vocabulary(
                    {
                        "anger": 0,
                        "contempt": 0,
                        "disgust": 0,
                        "fear": 0,
                        "sadness": 0,
                        "happiness": 1,
                        "surprise": 2,
                    },
                    excluded=("other",),
                ),
                "smic": _SMIC_3CLASS,
            },
            description=(
                "MEGC 2019 composite database, 3 classes. This maps emotions only: CASME II "
                "gives 90/32/25, and the official composite list (shipped as "
                "data_builders/megc2019_composite_3class.csv) further drops 2 disgust clips; "
                "SAMM 92/26/15; SMIC 70/51/43."
            ),
        ),
        Protocol(
            name="smic_3class",
            class_names=("negative", "positive", "surprise"),
            vocabularies={"smic": _SMIC_3CLASS},
            description="SMIC-HS as released: negative 70, positive 51, surprise 43 (164 clips).",
        ),
        # Our reading of the CAS(ME)^3 and MMEW protocols: the 7-class and 4-class
        # (negative / positive / surprise / others) splits most papers report.
        Protocol(
            name="casme3_4class",
            class_names=("negative", "positive", "surprise", "others"),
            vocabularies={"casme3": _FOUR_CLASS},
            description=(
                "CAS(ME)^3 Part A, 4 classes: anger, disgust, fear and sad pooled as negative."
            ),
        ),
        Protocol(
            name="casme3_7class",
            class_names=_SEVEN_EMOTIONS,
            vocabularies={"casme3": _SEVEN_CLASS},
            description="CAS(ME)^3 Part A, all 7 emotions of its sheet.",
        ),
        Protocol(
            name="mmew_4class",
            class_names=("negative", "positive", "surprise", "others"),
            vocabularies={"mmew": _FOUR_CLASS},
            description="MMEW, 4 classes: anger, disgust, fear and sadness pooled as negative.",
        ),
        Protocol(
            name="mmew_7class",
            class_names=_SEVEN_EMOTIONS,
            vocabularies={"mmew": _SEVEN_CLASS},
            description="MMEW, all 7 emotions of its sheet.",
        ),
    )
}


def protocols_covering(dataset: str) -> list[Protocol]:
    """Every protocol that maps the emotions of `dataset`, in registry order."""
    return [protocol for protocol in PROTOCOLS.values() if dataset in protocol.vocabularies]


def get_protocol(name: str) -> Protocol:
    """The protocol registered under `name`.

    Raises:
        UserError: unknown name; the message lists the known protocols.
    """
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise UserError(
            f"unknown protocol {name!r}; known protocols: {', '.join(sorted(PROTOCOLS))}"
        ) from None
