import pytest

from edgeser import labels as L


def test_usual_spellings_map_to_canonical():
    assert L.normalize("angry") == "anger"
    assert L.normalize("Happy") == "happiness"
    assert L.normalize("fearful") == "fear"
    assert L.normalize("surprised") == "surprise"
    assert L.normalize("sad") == "sadness"
    assert L.normalize("bored") == "boredom"
    assert L.normalize(" Neutral ") == "neutral"


def test_unknown_label_is_an_error_naming_it():
    with pytest.raises(L.LabelError, match="'contempt'"):
        L.normalize("contempt")


def test_merge_and_subset():
    merges = L.parse_merge("calm=neutral, bored=neutral")
    assert merges == {"calm": "neutral", "boredom": "neutral"}
    keep = L.parse_labels("sad,angry,neutral")
    assert keep == ["neutral", "sadness", "anger"]  # canonical order, whatever the order given
    assert L.apply("calm", merges, keep) == "neutral"
    assert L.apply("happy", merges, keep) is None
    with pytest.raises(L.LabelError):
        L.parse_merge("calm")


def test_merge_chains_and_conflicts_are_refused_not_half_applied():
    # boredom=neutral,neutral=sadness made the boredom clips "neutral" and every neutral one "sadness"
    for spec in ("boredom=neutral,neutral=sadness", "neutral=sadness,boredom=neutral"):
        with pytest.raises(L.LabelError, match=r"chain: write boredom=sadness if boredom is to end in sadness"):
            L.parse_merge(spec)
    with pytest.raises(L.LabelError, match=r"^calm merged twice, into neutral and into sadness"):
        L.parse_merge("calm=neutral,calm=sadness")      # the last silently won
    assert L.parse_merge("calm=neutral,calm=neutral,anger=anger") == {"calm": "neutral"}
