"""A whole run's result: every victim's audit with the run's facts once, and the victims that failed."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from auditkit.errors import AuditkitError
from auditkit.results.audit import RESULT_FILE, AuditResult
from auditkit.results.facts import RunFacts
from auditkit.results.storage import ResultError, read_json
from auditkit.results.summary import LeakageSummary
from auditkit.storage.files import inside, write_json

RUN_FILE = "summary.json"


@dataclass(frozen=True)
class VictimFailure:
    """A victim that could not be audited (its training diverged): reported, never cached."""

    name: str
    reason: str

    def to_dict(self) -> dict:
        """The JSON form."""
        return asdict(self)


@dataclass
class RunResult:
    """Every victim's audit in one run, with the run's facts once (and the victims that failed)."""

    facts: RunFacts
    victims: list[AuditResult]
    failures: list[VictimFailure] = field(default_factory=list)

    def summary(self) -> list[LeakageSummary]:
        """Each audited victim's headline counts.

        Returns:
            One summary per audited victim, in run order.
        """
        return [victim.summary() for victim in self.victims]

    def __getitem__(self, name: str) -> AuditResult:
        for victim in self.victims:
            if victim.name == name:
                return victim
        raise KeyError(name)

    def to_dict(self) -> dict:
        """The JSON form of summary.json: the run's facts, every victim's result, the failures."""
        return {
            "run": self.facts.to_dict(),
            "victims": [victim.to_dict() for victim in self.victims],
            "failures": [failure.to_dict() for failure in self.failures],
        }

    def save(self, directory: str | Path, victims: bool = True) -> Path:
        """Write each victim's data in its own folder, then summary.json (the same shape for any number of
        victims).

        Args:
            directory: the run's folder.
            victims: False when the victims are saved already (the runner saves each one as it finishes).

        Returns:
            The folder.
        """
        directory = Path(directory)
        for victim in self.victims if victims else ():
            victim.save(directory / victim.name)
        write_json(directory / RUN_FILE, self.to_dict())
        return directory

    @classmethod
    def of_audit(cls, result: AuditResult) -> RunResult:
        """One audit as a run of its own (what ``report`` renders for an audit saved from Python)."""
        attack = result.attack
        return cls(RunFacts.of_saved_audit(result.name, attack.seed, attack.device, attack.dtype), [result])

    @classmethod
    def load(cls, directory: str | Path) -> RunResult:
        """Read a run back.

        Args:
            directory: a run's folder (summary.json), or one audit's folder (result.json, e.g. from
                ``result.save``).

        Returns:
            The run, every victim checked against its checksums.

        Raises:
            ResultError: naming a missing or damaged file.
        """
        directory = Path(directory)
        path = directory / RUN_FILE
        if not path.is_file() and (directory / RESULT_FILE).is_file():
            return cls.of_audit(AuditResult.load(directory))
        values = read_json(path)
        try:
            names = [victim["name"] for victim in values["victims"]]
            folders = [inside(directory, name) for name in names]
            failures = [VictimFailure(**failure) for failure in values.get("failures", [])]
            facts = RunFacts.from_dict(values["run"])
        except (KeyError, TypeError, ValueError, AttributeError, AuditkitError) as error:
            raise ResultError(f"{path}: missing or wrong field ({error})") from None
        if len(set(names)) != len(names):
            raise ResultError(f"{path}: names a victim twice ({sorted(n for n in names if names.count(n) > 1)[0]!r})")
        victims = [AuditResult.load(folder) for folder in folders]
        for name, victim in zip(names, victims):
            if victim.name != name:
                raise ResultError(f"{path}: names a victim {name!r} whose result.json says {victim.name!r}")
        return cls(facts, victims, failures)
