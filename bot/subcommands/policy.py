"""``clearance policy check`` and ``clearance policy explain``."""

from __future__ import annotations

import argparse
import asyncio
import sys

from bot.connectors import POLICY_CHECKS
from bot.subcommands.invocation import EXIT_OK, EXIT_PROBLEM, settings_from
from engine.durations import format_duration
from engine.policy_loading import PolicyError, load_policy
from engine.refusals import Refused
from message_templates import refusal_text, render


def cmd_policy_check(args: argparse.Namespace) -> int:
    status = EXIT_OK
    for file in args.files:
        try:
            policy = load_policy(file, POLICY_CHECKS)
        except PolicyError as exc:
            for problem in exc.problems:
                print(problem)
            status = EXIT_PROBLEM
            continue
        print(f"{file}: OK, {policy.summary()}")
    return status


def cmd_policy_explain(args: argparse.Namespace) -> int:
    from bot.app import build

    settings = settings_from(args)
    components = build(settings)
    try:
        policy = components.policies.current
    except PolicyError as exc:
        print(exc, file=sys.stderr)
        return EXIT_PROBLEM

    async def run() -> str:
        explanation = await components.clearance.explain(args.requester, args.resource)
        emails = {e for s in explanation.stages for e in s.approvers}
        emails |= {x.email for s in explanation.stages for x in s.excluded}
        if explanation.break_glass is not None:
            emails |= set(explanation.break_glass.reviewers.people)
        names = {}
        for email in emails:
            person = await components.directory.person(email)
            if person is not None:
                names[email] = person.name
        r = explanation.resource
        return render(
            "cli",
            "explain",
            {
                "explanation": explanation,
                "names": names,
                "policy_version": policy.version,
                "default_duration": format_duration(r.duration.default),
                "max_duration": format_duration(r.duration.max),
            },
        )

    try:
        print(asyncio.run(run()))
    except Refused as exc:
        # A refusal is a code and parameters; its wording comes from the templates.
        print(f"error: {refusal_text(exc)}", file=sys.stderr)
        return EXIT_PROBLEM
    return EXIT_OK
