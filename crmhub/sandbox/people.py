"""Seeded generation of the people behind every sandbox source, with the messiness of real data."""

from __future__ import annotations

import random
import string
from dataclasses import dataclass, field

# Splitting one string keeps these long word lists readable.
_FIRST = (  # noqa: SIM905
    "Ada Alan Amara Ana Ben Bruno Carla Chen Clara Dario Elena Emil Farah Felix Grace Hana Hugo Ines Ivan "
    "Jana Jonas Karin Kenji Lara Leo Lina Luca Maya Mia Nadia Noah Olga Omar Paula Pedro Rosa Sami Sara Tom "
    "Uma Vera Wen Yara Zoe"
).split()
_LAST = (  # noqa: SIM905
    "Abbott Bauer Costa Dubois Eriksen Fischer Garcia Haddad Ito Jensen Kowalski Laurent Moreau Novak "
    "Okafor Petrov Quinn Rossi Silva Tanaka Umar Varga Weber Xu Yilmaz Zimmer"
).split()
_DOMAINS = ("example.com", "example.org", "mail.example.net", "acme.example", "globex.example")
_COMPANIES = ("Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark", "Wayne", "Tyrell", "Cyberdyne")
_ALNUM = string.ascii_letters + string.digits
# Maps every byte to an id character so ids come from one fast `randbytes` call.
_ID_BYTES = bytes(ord(_ALNUM[i % len(_ALNUM)]) for i in range(256))


@dataclass
class Person:
    """One generated human; each source sees a differently formatted copy of them."""

    index: int
    first: str
    last: str
    email: str
    phone_e164: str | None
    company: str
    in_stripe: bool
    in_hubspot: bool
    in_typeform: bool
    in_segmentio: bool
    created: int
    email_valid: bool = True
    phone_valid: bool = True
    variants: dict[str, str] = field(default_factory=dict)

    @property
    def user_id(self) -> str:
        """The product's own user id, shared by Typeform hidden fields and Segment.com events."""
        return f"u_{self.index:06d}"


def random_id(rng: random.Random, prefix: str, length: int = 14) -> str:
    """A Stripe-looking id such as `cus_QXg1o8vcGmoR32`, drawn from `rng`."""
    return prefix + rng.randbytes(length).translate(_ID_BYTES).decode()


def messy_email(rng: random.Random, email: str) -> str:
    """The same address as another system might hold it: case changed, stray whitespace."""
    style = rng.random()
    if style < 0.25:
        return email.upper() if rng.random() < 0.3 else email[:1].upper() + email[1:]
    if style < 0.35:
        return f" {email} " if rng.random() < 0.5 else f"{email}\t"
    return email


def format_phone(rng: random.Random, e164: str) -> str:
    """A phone number in one of the formats people type: E.164, national with spaces, dashes."""
    national = e164[-10:]
    style = rng.randrange(4)
    if style == 0:
        return e164
    if style == 1:
        return f"({national[:3]}) {national[3:6]} {national[6:]}"
    if style == 2:
        return f"{national[:3]}-{national[3:6]}-{national[6:]}"
    return f"+1 {national[:3]} {national[3:6]} {national[6:]}"


def generate_people(count: int, seed: int, now: int, *, start: int = 0) -> list[Person]:
    """`count` people spread over the sources, overlapping, deterministic for `(count, seed, now)`.

    Their indexes (in e-mails and phone numbers) run from `start`, so people added later (a tick's
    new signups) do not take the e-mail or phone of person 0.
    """
    rng = random.Random(f"people:{seed}")
    people: list[Person] = []
    for index in range(start, start + count):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        domain = rng.choice(_DOMAINS)
        email = f"{first}.{last}{index}@{domain}".lower()
        email_valid = rng.random() >= 0.03
        if not email_valid:
            email = rng.choice(
                (f"{first}.{last}{index}@", f"{first}{index} at {domain}", f"{first}@@{domain}")
            )
        phone: str | None = None
        phone_valid = True
        if rng.random() < 0.8:
            # 555-01xx is reserved for fiction; the area codes are real so parsers accept the number.
            area = rng.choice(("212", "415", "312", "617", "206"))
            phone = f"+1{area}555{index % 10000:04d}"
            if rng.random() < 0.04:
                phone, phone_valid = f"+1{area}55", False
        mix = rng.random()
        person = Person(
            index=index,
            first=first,
            last=last,
            email=email,
            phone_e164=phone,
            company=rng.choice(_COMPANIES),
            # Most people are in two or more sources so identity resolution has real work to do.
            in_stripe=mix < 0.75,
            in_hubspot=mix > 0.15,
            in_typeform=rng.random() < 0.5,
            in_segmentio=rng.random() < 0.6,
            created=now - rng.randrange(3600, 400 * 86400),
            email_valid=email_valid,
            phone_valid=phone_valid,
        )
        for source in ("stripe", "hubspot", "typeform"):
            person.variants[f"{source}.email"] = messy_email(rng, email)
            if phone is not None:
                person.variants[f"{source}.phone"] = format_phone(rng, phone)
        people.append(person)
    return people
