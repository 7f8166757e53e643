"""Directory.build and lookups (the matching rules themselves are in test_rules.py)."""

from __future__ import annotations

from decimal import Decimal

from pipeline.directory import AltAddress, Contact, ContactMatch, Directory, Salesperson
from tests.core.builders import directory


def test_lookups_normalise_their_argument() -> None:
    d = directory()
    sp = d.salesperson_for("  SAM@us.EXAMPLE")
    assert sp is not None and sp.code == "SP1"
    assert d.contact_for("Ann@Them.Example") == ContactMatch("C001", "C000", "")


def test_unknown_address_gives_none() -> None:
    assert directory().salesperson_for("nobody@x.example") is None
    assert directory().contact_for("nobody@x.example") is None


def test_alt_address_of_an_unknown_contact_is_ignored() -> None:
    d = Directory.build(alt_addresses=[AltAddress("GHOST", "HOME", "ghost@x.example")])
    assert d.contact_for("ghost@x.example") is None


def test_lowest_alt_address_wins_when_shared() -> None:
    contacts = [Contact(no, no, "person", "", "") for no in ("C2", "C1")]
    alts = [AltAddress("C2", "A", "x@y.example"), AltAddress("C1", "B", "x@y.example")]
    assert Directory.build(contacts=contacts, alt_addresses=alts).contact_for("x@y.example") == (
        ContactMatch("C1", "", "B")
    )


def test_template_lookup_and_counts() -> None:
    d = directory()
    template = d.template("EMAIL")
    assert template is not None and template.unit_cost == Decimal("1.50")
    assert d.template("NOPE") is None
    assert d.counts["contacts"] == 7


def test_builds_a_large_directory() -> None:
    # 1,000 salespersons and 50,000 contacts with an alt. address each (speed: see bench/).
    salespersons = [Salesperson(f"SP{i}", "", f"sp{i}@us.example") for i in range(1_000)]
    contacts = [Contact(f"C{i:06}", "", "person", "", f"c{i}@them.example") for i in range(50_000)]
    alts = [AltAddress(f"C{i:06}", "ALT", f"alt{i}@them.example") for i in range(50_000)]
    d = Directory.build(salespersons, contacts, alts)
    assert d.salesperson_for("sp999@us.example") == salespersons[999]
    assert d.contact_for("C49999@them.example") == ContactMatch("C049999", "", "")
    assert d.contact_for("alt7@them.example") == ContactMatch("C000007", "", "ALT")
