"""The in-memory directory: who is a salesperson/purchaser, who is a contact, by address.

Pure (no I/O): `store.directory_repo` loads the rows and rebuilds a `Directory` when the
tables change; the rules only ask it two questions, each a dict lookup.

Matching semantics (GUIDE section 2, from NAV's IsSalesperson / IsContact):
- addresses compare on `model.address_key` (trimmed, lowercased bare address);
- an empty address, or one longer than 80 characters, never matches anything;
- several salespersons with one address: the lowest code wins; several contacts: the lowest
  contact no. wins. "Lowest" is NAV's key order, i.e. the text order of the code/no. (a
  FindFirst on the primary key); we compare code points, as PostgreSQL's "C" collation does;
- a contact's own address beats every alternative address: an address that is one contact's
  E-Mail and another contact's alt. address matches the first (NAV searches Contact first);
- the salesperson-before-contact order is a rule, so it lives in `rules.py`, not here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import Literal

from pipeline.model import MAX_ADDRESS_CHARS, address_key

ContactType = Literal["person", "company"]
CONTACT_TYPES: tuple[ContactType, ...] = ("person", "company")


@dataclass(frozen=True, slots=True)
class Salesperson:
    code: str
    name: str
    email: str


@dataclass(frozen=True, slots=True)
class Contact:
    no: str
    name: str
    type: ContactType
    company_no: str
    email: str


@dataclass(frozen=True, slots=True)
class AltAddress:
    contact_no: str
    code: str
    email: str


@dataclass(frozen=True, slots=True)
class Template:
    code: str
    description: str
    group_code: str
    unit_cost: Decimal
    unit_duration_min: Decimal


@dataclass(frozen=True, slots=True)
class ContactMatch:
    """What an entry records of the matched contact (NAV copies these three fields)."""

    contact_no: str
    company_no: str
    alt_address_code: str = ""


def matchable_key(email: str) -> str | None:
    """The lookup key of `email`, or None when it can never match (empty or > 80 chars)."""
    key = address_key(email)
    if not key or len(key) > MAX_ADDRESS_CHARS:
        return None
    return key


def _company_no(contact: Contact) -> str:
    # NAV sets a company contact's Company No. to its own No.; a CSV often leaves it empty.
    if contact.type == "company" and not contact.company_no:
        return contact.no
    return contact.company_no


@dataclass(frozen=True)
class Directory:
    """An immutable index; build a new one to change it (readers never see half a reload)."""

    salespersons_by_key: MappingProxyType[str, Salesperson]
    contacts_by_key: MappingProxyType[str, ContactMatch]
    alt_addresses_by_key: MappingProxyType[str, ContactMatch]
    templates_by_code: MappingProxyType[str, Template]
    counts: MappingProxyType[str, int] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def build(
        cls,
        salespersons: Iterable[Salesperson] = (),
        contacts: Iterable[Contact] = (),
        alt_addresses: Iterable[AltAddress] = (),
        templates: Iterable[Template] = (),
    ) -> Directory:
        salesperson_list = list(salespersons)
        contact_list = list(contacts)
        alt_list = list(alt_addresses)
        template_list = list(templates)

        # Visit in key order and keep the first per address: "lowest code/no. wins".
        by_key: dict[str, Salesperson] = {}
        for sp in sorted(salesperson_list, key=lambda s: s.code):
            key = matchable_key(sp.email)
            if key is not None:
                by_key.setdefault(key, sp)

        contacts_by_no = {c.no: c for c in contact_list}
        own: dict[str, ContactMatch] = {}
        for c in sorted(contact_list, key=lambda c: c.no):
            key = matchable_key(c.email)
            if key is not None and key not in own:
                own[key] = ContactMatch(c.no, _company_no(c), "")

        alt: dict[str, ContactMatch] = {}
        for a in sorted(alt_list, key=lambda a: (a.contact_no, a.code)):
            key = matchable_key(a.email)
            owner = contacts_by_no.get(a.contact_no)
            if key is None or owner is None or key in alt:
                continue  # an alt. address of an unknown contact cannot be logged against
            alt[key] = ContactMatch(owner.no, _company_no(owner), a.code)

        return cls(
            salespersons_by_key=MappingProxyType(by_key),
            contacts_by_key=MappingProxyType(own),
            alt_addresses_by_key=MappingProxyType(alt),
            templates_by_code=MappingProxyType({t.code: t for t in template_list}),
            counts=MappingProxyType(
                {
                    "salespersons": len(salesperson_list),
                    "contacts": len(contact_list),
                    "alt_addresses": len(alt_list),
                    "templates": len(template_list),
                }
            ),
        )

    @classmethod
    def empty(cls) -> Directory:
        return cls.build()

    def salesperson_for(self, key: str) -> Salesperson | None:
        """The salesperson/purchaser with this address (normalised again: cheap and safe)."""
        k = matchable_key(key)
        return None if k is None else self.salespersons_by_key.get(k)

    def contact_for(self, key: str) -> ContactMatch | None:
        """The contact with this address: own address first, then alt. addresses."""
        k = matchable_key(key)
        if k is None:
            return None
        return self.contacts_by_key.get(k) or self.alt_addresses_by_key.get(k)

    def template(self, code: str) -> Template | None:
        return self.templates_by_code.get(code)
