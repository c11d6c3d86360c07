"""Version matchers and expectation checks against recorded /libraries/ documents."""

from __future__ import annotations

import copy
import json
import pickle
from pathlib import Path

import pytest

from sandbox_exporter.config.models import Expectations
from sandbox_exporter.expectations import (
    ExpectationOutcome,
    FrozenDict,
    Matcher,
    check_expectations,
    version_number,
)

FIXTURES = Path(__file__).parent / "fixtures"


def load_libraries(generation: str) -> dict:
    return json.loads((FIXTURES / generation / "libraries.json").read_text())


# (spec, reported version, expected result)
MATCH_TABLE = [
    # presence
    (None, "3.7.3", True),
    (None, "?", True),
    ("", "1.0", True),
    ("present", "whatever", True),
    ("*", "?", True),
    # exact: the string itself, without epoch, or its version number
    ("3.7.3", "3.7.3", True),
    ("3.7.3", "3.7.4", False),
    ("3.7.3", "3.7.3-1", True),
    ("3.7", "3.7.3", False),
    ("11.0.7", "openjdk 11.0.7", True),
    ("openjdk 11.0.7", "openjdk 11.0.7", True),
    ("2.20.1-2+deb10u3", "1:2.20.1-2+deb10u3", True),
    ("1:2.20.1-2+deb10u3", "1:2.20.1-2+deb10u3", True),
    ("?", "?", True),
    # glob
    ("3.8.*", "3.8.2", True),
    ("3.8.*", "3.9.0", False),
    ("3.8.*", "3.8", False),
    ("8.?", "8.3", True),
    ("8.?", "8.3.0", False),
    ("8.*", "4:8.3.0-1", True),
    ("1.*", "1.18.3", True),
    ("11.*", "openjdk 11.0.7", True),
    ("*deb10u3", "1:2.20.1-2+deb10u3", True),
    ("[0-9].*", "8.3.0", True),
    # comparisons: version number only, zero padded
    (">=3.8", "3.8", True),
    (">=3.8", "3.8.0", True),
    (">=3.8", "3.7.3", False),
    (">=3.8", "3.10.1", True),
    ("<12", "11.7", True),
    ("<12", "12", False),
    (">3", "3.0.1", True),
    (">3", "3", False),
    ("<=5.28", "5.28.1", False),
    ("<=5.28.1", "5.28.1-6", True),
    ("==3.8", "3.8.0", True),
    ("==3.8", "3.8.1", False),
    ("!=3.8.1", "3.8.1", False),
    ("!=3.8.1", "3.8.2", True),
    (">=2.20", "1:2.20.1-2+deb10u3", True),
    (">=3", "1:2.20.1-2+deb10u3", False),
    (">=11", "openjdk 11.0.7", True),
    (">=11", "11+200+deb10u3", True),
    (">=11", "11.0.7+10-3~deb10u1", True),
    (">=3.8", "3.8.0rc1", True),
    (">=1", "?", False),
    ("!=1", "?", False),
    (">= 3.8", "3.9", True),
    # combinations: all must hold
    (">=3.8,<4", "3.9.1", True),
    (">=3.8,<4", "4.0", False),
    (">=3.8,<4", "3.7", False),
    (">=3.8, <4, !=3.9.0", "3.9.0", False),
    ("3.*,!=3.7.3", "3.7.3", False),
    ("3.*,!=3.7.3", "3.7.4", True),
]


@pytest.mark.parametrize(("spec", "version", "expected"), MATCH_TABLE)
def test_matcher_table(spec: str | None, version: str, expected: bool) -> None:
    assert Matcher(spec).matches(version) is expected


@pytest.mark.parametrize("spec", [None, "", "present", "3.7.3", "3.*", ">=3.8,<4"])
def test_an_absent_version_never_matches(spec: str | None) -> None:
    assert Matcher(spec).matches(None) is False


@pytest.mark.parametrize(
    ("spec", "text"),
    [
        (None, "present"),
        ("", "present"),
        ("*", "present"),
        ("present", "present"),
        ("3.7.3", "3.7.3"),
        ("8.?", "8.?"),
        (">=3.8,<4", ">=3.8,<4"),
        (" >= 3.8 , < 4 ", ">=3.8,<4"),
        ("openjdk 11.0.7", "openjdk 11.0.7"),
    ],
)
def test_str_gives_the_spec_back(spec: str | None, text: str) -> None:
    matcher = Matcher(spec)
    assert str(matcher) == text
    assert Matcher(str(matcher)) == matcher


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        (">=", "missing version after '>='"),
        ("<", "missing version after '<'"),
        (">=abc", "must be numbers separated by dots"),
        ("<3.8.*", "must be numbers separated by dots"),
        ("=3.8", "unknown operator"),
        ("~=3.8", "unknown operator"),
        ("=>3.8", "unknown operator"),
        (">=3.8,,<4", "empty condition"),
        (">=3.8,", "empty condition"),
        ("present,>=3", "cannot be combined"),
        ("*,<4", "cannot be combined"),
    ],
)
def test_invalid_specs_are_rejected_with_the_spec_named(spec: str, fragment: str) -> None:
    with pytest.raises(ValueError) as caught:
        Matcher(spec)
    assert fragment in str(caught.value)
    assert repr(spec) in str(caught.value)


@pytest.mark.parametrize(
    ("version", "number"),
    [
        ("3.7.3", (3, 7, 3)),
        ("1:2.20.1-2+deb10u3", (2, 20, 1)),
        ("4:8.3.0-1", (8, 3, 0)),
        ("openjdk 11.0.7", (11, 0, 7)),
        ("11+200+deb10u3", (11,)),
        ("2.97001", (2, 97001)),
        ("?", None),
        ("", None),
    ],
)
def test_version_number(version: str, number: tuple[int, ...] | None) -> None:
    assert version_number(version) == number


def test_frozen_dict_is_immutable_but_json_and_pickle_friendly() -> None:
    frozen = FrozenDict({"command": "echo hi", "timeout": 5})
    with pytest.raises(TypeError):
        frozen["command"] = "rm -rf /"  # type: ignore[index]
    with pytest.raises(TypeError):
        frozen.update(timeout=1)
    with pytest.raises(TypeError):
        del frozen["timeout"]  # type: ignore[attr-defined]
    assert json.loads(json.dumps(frozen)) == {"command": "echo hi", "timeout": 5}
    assert pickle.loads(pickle.dumps(frozen)) == frozen
    assert copy.deepcopy(frozen) == frozen
    assert hash(frozen) == hash(FrozenDict({"timeout": 5, "command": "echo hi"}))


def v2_languages(doc: dict) -> dict[str, str | None]:
    """The 2.x top-level language versions, named the way the documents package names them."""
    names = {"python3": "python3", "python2": "python2", "java": "java", "gcc": "gcc"}
    names.update({"g++": "gpp", "perl": "perl", "postgres": "postgres"})
    return {ours: doc.get(theirs) for theirs, ours in names.items()}


def test_check_expectations_against_the_recorded_2x_document() -> None:
    doc = load_libraries("v2")
    expect = Expectations(
        languages=FrozenDict(
            python3=Matcher(">=3.7,<4"),
            java=Matcher(">=17"),
            gpp=Matcher("8.*"),
            postgres=Matcher(None),
        ),
        packages=FrozenDict(
            system=FrozenDict(git=Matcher(">=2.20"), libc6=Matcher("2.28*"), r=Matcher(None)),
            python=FrozenDict(jinja2=Matcher("2.11.*"), numpy=Matcher("<1.18")),
            perl=FrozenDict({"Data::Dumper": Matcher(None), "Pod::Usage": Matcher(">=1")}),
            c=FrozenDict(libssl=Matcher("1.1")),
        ),
        bin=("gcc", "javac", "ghc"),
    )
    outcomes = check_expectations(expect, v2_languages(doc), doc["libraries"], doc["bin"])
    assert outcomes == [
        ExpectationOutcome("language", "python3", ">=3.7,<4", "3.7.3", True),
        ExpectationOutcome("language", "java", ">=17", "openjdk 11.0.7", False),
        ExpectationOutcome("language", "gpp", "8.*", "8.3.0", True),
        ExpectationOutcome("language", "postgres", "present", "11.7", True),
        ExpectationOutcome("system", "git", ">=2.20", "1:2.20.1-2+deb10u3", True),
        ExpectationOutcome("system", "libc6", "2.28*", "2.28-10", True),
        ExpectationOutcome("system", "r", "present", None, False),
        ExpectationOutcome("python", "jinja2", "2.11.*", "2.11.2", True),
        ExpectationOutcome("python", "numpy", "<1.18", "1.18.3", False),
        ExpectationOutcome("perl", "Data::Dumper", "present", "2.167", True),
        ExpectationOutcome("perl", "Pod::Usage", ">=1", "?", False),
        ExpectationOutcome("c", "libssl", "1.1", "1.1", True),
        ExpectationOutcome("bin", "gcc", "present", "present", True),
        ExpectationOutcome("bin", "javac", "present", "present", True),
        ExpectationOutcome("bin", "ghc", "present", None, False),
    ]


def test_check_expectations_against_the_recorded_3x_document() -> None:
    doc = load_libraries("v3")
    # 3.x reports no top-level languages: the documents package derives them and may
    # leave some absent (None).
    languages = {"python3": "3.7.3", "java": None}
    expect = Expectations(
        languages=FrozenDict(python3=Matcher("3.7.3"), java=Matcher(None), perl=Matcher(None)),
        packages=FrozenDict(
            system=FrozenDict({"openjdk-11-jdk": Matcher(">=11"), "clang": Matcher(">=7")}),
            python=FrozenDict(markupsafe=Matcher("2.0.1"), pandas=Matcher(">=1.1,<2")),
        ),
        bin=("R", "ghc"),
    )
    outcomes = check_expectations(expect, languages, doc["libraries"], doc["bin"])
    assert [(o.kind, o.name, o.found, o.met) for o in outcomes] == [
        ("language", "python3", "3.7.3", True),
        ("language", "java", None, False),
        ("language", "perl", None, False),
        ("system", "openjdk-11-jdk", "11.0.7+10-3~deb10u1", True),
        ("system", "clang", "1:7.0-47", True),
        ("python", "markupsafe", "2.0.1", True),
        ("python", "pandas", "1.1.5", True),
        ("bin", "R", "present", True),
        ("bin", "ghc", "present", True),
    ]


def test_a_multi_arch_package_prefers_the_architecture_that_meets_the_expectation() -> None:
    listed = {"system": {"libc6:i386": "2.24-11", "libc6:amd64": "2.28-10"}}
    expect = Expectations(packages=FrozenDict(system=FrozenDict(libc6=Matcher(">=2.28"))))
    [outcome] = check_expectations(expect, {}, listed, [])
    assert outcome.found == "2.28-10"
    assert outcome.met
    strict = Expectations(packages=FrozenDict(system=FrozenDict(libc6=Matcher(">=3"))))
    [outcome] = check_expectations(strict, {}, listed, [])
    assert outcome.found == "2.28-10"  # first in name order: amd64 before i386
    assert not outcome.met


def test_an_architecture_qualified_expectation_matches_only_that_architecture() -> None:
    listed = {"system": {"libc6:amd64": "2.28-10"}}
    expect = Expectations(packages=FrozenDict(system=FrozenDict({"libc6:i386": Matcher(None)})))
    [outcome] = check_expectations(expect, {}, listed, [])
    assert outcome.found is None
    assert not outcome.met


def test_a_kind_the_server_did_not_report_means_missing_packages() -> None:
    expect = Expectations(packages=FrozenDict(perl=FrozenDict(Carp=Matcher(None))))
    [outcome] = check_expectations(expect, {}, {"system": {}}, [])
    assert outcome == ExpectationOutcome("perl", "Carp", "present", None, False)


def test_the_g_plus_plus_spelling_of_the_server_is_found_for_gpp() -> None:
    expect = Expectations(languages=FrozenDict(gpp=Matcher("8.3.0")))
    [outcome] = check_expectations(expect, {"g++": "8.3.0"}, {}, [])
    assert outcome.met


def test_no_expectations_no_outcomes() -> None:
    doc = load_libraries("v2")
    assert check_expectations(Expectations(), v2_languages(doc), doc["libraries"], doc["bin"]) == []


def test_absurdly_long_numbers_are_handled_not_crashed_on() -> None:
    huge = "9" * 5000
    assert version_number(huge) is None
    assert not Matcher(">=1").matches(huge)
    assert Matcher("*").matches(huge)
    with pytest.raises(ValueError, match="version too long"):
        Matcher(">=" + huge)
