"""The AIEV-Instruct rounds: generate, split, train, score teacher and student, decide; round after round.

Each round r lives in DIR/rounds/rNN/ and runs six steps, each recorded in DIR/state.json (data_pipeline.aiev.state):

    generate       `data_pipeline.generate` (called as a function) over the next seeds, into rNN/gen/, with
                   the current stage's agents: the teacher (teaching) or the latest student as questioner and
                   programmer (self-learning: in-process hf backend, or the OpenAI-compatible server the
                   config names), items recording `stage` and the model (the student's checkpoint folder).
                   A round takes `round_size` seeds; when dedup, decontamination or rejections leave it short
                   of `round_size` verified items it takes more (estimated from the yield so far), at most
                   `max_generation_passes` times. The seed range of each pass is recorded before it runs, so
                   a rerun after a kill resumes the same pass in the generator's own resumable folder.
    split          the round's verified items shuffled with `split.seed` and the round number, `test_share`
                   (1:9) to rNN/test.jsonl and the rest to rNN/train.jsonl (written atomically).
    train          `training.sft.run_sft` in-process, or the configured launcher (`deepspeed ...`, `sbatch
                   --wait ...`) with a per-round YAML, on the train items of every round so far, into
                   rNN/student/ with `resume` on (a killed run continues from its last checkpoint). From the
                   base model each round (start_from: base, the default) or from the last student (last).
    score_teacher  each test item's problem asked once (greedy; evaluation.generation, with or without the
    score_student  interpreter loop), the answer's code checked with the item's own unit tests through
                   evaluation.score_problems (data_pipeline.aiev.scoring). Samples are kept in rNN/score/WHO/
                   so a rerun asks no model twice. In the self-learning stage the teacher is not asked.
    decide         teaching: the student takes over when its pass@1 is strictly better than the teacher's
                   (the paper's rule; `comparison: not_worse` also allows a tie). Logged with its numbers in
                   DIR/decisions.jsonl and on stderr.

Each step's result records `delegated_s`, the time spent inside the pieces it calls (model calls, executions,
training, model loading), so the orchestration's own share of a round can be measured (benchmarks/aiev_overhead.py).

What it deliberately does not do: generate, train or run tests itself; those are the pieces' jobs.
"""

from __future__ import annotations

import json
import math
import random
import shlex
import subprocess
import sys
import time
from argparse import Namespace
from pathlib import Path

from data_pipeline.aiev.config import AievConfig, ConfigError
from data_pipeline.aiev.scoring import item_problem, wilson_interval
from data_pipeline.aiev.state import DECISIONS_FILE, RunState
from data_pipeline.runfolder import DIALOGUES_FILE, REJECTED_FILE, REMOVED_FILE, write_atomically

TEACHING, SELF_LEARNING = "teaching", "self-learning"
STEPS = ("generate", "split", "train", "score_teacher", "score_student", "decide")
SEEDS_FILE, TEST_FILE, TRAIN_FILE = "seeds.jsonl", "test.jsonl", "train.jsonl"
# Each model gets an item's problem as the programmer got it in generation: the first user turn, as it is.
ITEM_INSTRUCTION = "{prompt}"
MIN_YIELD = 0.1  # assumed verified share per seed when a pass yielded nothing, for sizing the next pass


class AievError(RuntimeError):
    """A step could not finish; one line saying what to do (a rerun continues where it stopped)."""


def step_name(round_no: int, step: str) -> str:
    return f"r{round_no:02d}.{step}"


def _read_records(path: Path) -> list[dict]:
    from interpreter.dialogue import read_dialogues

    return [d.to_json() for d in read_dialogues(path)] if path.exists() else []


def _write_records(path: Path, records: list[dict]) -> None:
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    write_atomically(path, data.encode("utf-8"))


def _usage(records: list[dict]) -> tuple[int, float]:
    tokens, cost = 0, 0.0
    for record in records:
        meta = record.get("meta") or {}
        for usage in (meta.get("usage") or {}).values():
            tokens += int(usage.get("prompt_tokens", 0)) + int(usage.get("completion_tokens", 0))
        cost += float(meta.get("cost_usd") or 0.0)
    return tokens, cost


def say(message: str) -> None:
    print(f"aiev: {message}", file=sys.stderr, flush=True)


class Rounds:
    def __init__(self, config: AievConfig, run_dir: str | Path, *, progress: bool = True):
        self.config = config
        self.dir = Path(run_dir)
        self.state = RunState(self.dir)
        self.progress = progress
        self._seeds = None

    # -- the loop -------------------------------------------------------------------------------------

    def run(self) -> int:
        self._check_finished_steps()
        for round_no in range(self.config.max_rounds):
            if not self.state.done(step_name(round_no, "generate")) and self._seeds_left(round_no) == 0:
                say(f"no seeds left for round {round_no}; stopping")
                break
            self.run_round(round_no)
        say(f"done: {self.summary_line()}")
        return 0

    def _check_finished_steps(self) -> None:
        """Refuse before any work when a finished step was made with another config (one line)."""
        for name, step in sorted(self.state.steps.items()):
            if step["status"] != "done":
                continue
            round_no, kind = int(name[1:3]), name.split(".", 1)[1]
            self.state.check(name, self.inputs(round_no, kind))

    def stage(self, round_no: int) -> str:
        """Teaching until a decision switched to self-learning; never back."""
        for r in range(round_no):
            name = step_name(r, "decide")
            if self.state.done(name) and self.state.result(name)["stage_after"] == SELF_LEARNING:
                return SELF_LEARNING
        return TEACHING

    def round_dir(self, round_no: int) -> Path:
        return self.dir / "rounds" / f"r{round_no:02d}"

    def run_round(self, round_no: int) -> None:
        for step in STEPS:
            name = step_name(round_no, step)
            if self.state.done(name):
                continue
            inputs = self.inputs(round_no, step)
            started = time.monotonic()
            self.state.start(name, inputs)
            result = getattr(self, f"_{step}")(round_no, name)
            self.state.finish(name, result, time.monotonic() - started)

    # -- what each step depends on (a finished step with other inputs is refused) ----------------------

    def _student_for(self, round_no: int) -> str | None:
        """The newest student checkpoint trained before round `round_no` (None before the first)."""
        for r in range(round_no - 1, -1, -1):
            name = step_name(r, "train")
            if self.state.done(name) and self.state.result(name).get("checkpoint"):
                return self.state.result(name)["checkpoint"]
        return None

    def inputs(self, round_no: int, step: str) -> dict:
        c = self.config
        stage = self.stage(round_no)
        if step == "generate":
            if stage == TEACHING:
                agents = {"teacher": {"base_url": c.teacher.base_url, "model": c.teacher.model}}
            elif c.student.server is not None:
                agents = {
                    "student_server": {"base_url": c.student.server.base_url, "model": c.student.server.model}
                }
            else:
                agents = {
                    "student": self._student_for(round_no),
                    "dtype": c.student.dtype,
                    "quantize": c.student.quantize,
                }
            return {
                "round": round_no,
                "stage": stage,
                "agents": agents,
                "seeds": c.seeds,
                "seed_field": c.seed_field,
                "round_size": c.round_size,
                "max_generation_passes": c.max_generation_passes,
                "generation": c.generation,
            }
        if step == "split":
            return {"round": round_no, "split": c.section("split")}
        if step == "train":
            return {"round": round_no, "training": c.section("training"), "student_base": c.student.base}
        if step in ("score_teacher", "score_student"):
            model = (
                {"base_url": c.teacher.base_url, "model": c.teacher.model}
                if step == "score_teacher"
                else {"dtype": c.student.dtype, "quantize": c.student.quantize}
            )
            return {"round": round_no, "stage": stage, "evaluation": c.section("evaluation"), "model": model}
        return {"round": round_no, "stage": stage, "comparison": c.comparison}

    # -- generate --------------------------------------------------------------------------------------

    def seeds(self) -> list:
        if self._seeds is None:
            from data_pipeline.seeds import SeedError, load_seeds

            try:
                self._seeds = load_seeds(self.config.seeds, self.config.seed_field)
            except SeedError as exc:
                raise ConfigError(f"seeds: {exc}") from None
        return self._seeds

    def _seed_start(self, round_no: int) -> int:
        if round_no == 0:
            return 0
        return self.state.result(step_name(round_no - 1, "generate"))["seeds"][1]

    def _seeds_left(self, round_no: int) -> int:
        if round_no > 0 and not self.state.done(step_name(round_no - 1, "generate")):
            return 1  # the previous round is not finished; it will say
        return len(self.seeds()) - self._seed_start(round_no)

    def generator_argv(self, round_no: int, seeds_file: Path, out: Path) -> list[str]:
        c, stage = self.config, self.stage(round_no)
        argv = ["generate", "--seeds", str(seeds_file), "--out", str(out)]
        if not self.progress:
            argv.append("--no-progress")
        if stage == TEACHING:
            argv += ["--teacher-base-url", c.teacher.base_url]
            argv += ["--teacher-model", c.teacher.model] if c.teacher.model else []
            argv += ["--api-key-file", c.teacher.api_key_file] if c.teacher.api_key_file else []
        elif c.student.server is not None:
            server = c.student.server
            argv += ["--stage", SELF_LEARNING, "--teacher-base-url", server.base_url]
            argv += ["--teacher-model", server.model] if server.model else []
            argv += ["--api-key-file", server.api_key_file] if server.api_key_file else []
        else:
            student = self._student_for(round_no)
            if student is None:
                raise AievError(f"round {round_no}: self-learning needs a trained student; none is recorded")
            argv += ["--stage", SELF_LEARNING, "--teacher-backend", "hf", "--teacher-model", student]
            argv += ["--dtype", c.student.dtype, "--quantize", c.student.quantize]
        return argv + list(c.generation)

    def _run_generator(self, argv: list[str]) -> float:
        from data_pipeline.cli import build_parser
        from data_pipeline.generate import generate

        try:
            args = build_parser().parse_args(argv)
        except SystemExit:
            raise ConfigError(f"generation: the generator refused its flags: {shlex.join(argv)}") from None
        started = time.monotonic()
        code = generate(args)
        if code == 3:
            raise AievError("the generator's cost limit (--max-cost) was reached; raise it and rerun")
        if code != 0:
            raise AievError("the round's generation did not complete (see above); rerun to continue")
        return time.monotonic() - started

    def _generate(self, round_no: int, name: str) -> dict:
        c = self.config
        rdir = self.round_dir(round_no)
        gen = rdir / "gen"
        seeds_file = rdir / SEEDS_FILE
        seeds = self.seeds()
        start = self._seed_start(round_no)
        progress = self.state.step(name)["progress"]
        ends, finished = list(progress.get("ends", [])), progress.get("finished", 0)
        delegated = 0.0
        while True:
            if finished == len(ends):  # between passes: is another one needed, and how large?
                verified = len(_read_records(gen / DIALOGUES_FILE))
                end = ends[-1] if ends else start
                if verified >= c.round_size or len(ends) >= c.max_generation_passes or end >= len(seeds):
                    break
                rate = max(verified / (end - start), MIN_YIELD) if end > start else 1.0
                ends.append(min(len(seeds), end + math.ceil((c.round_size - verified) / rate)))
                self.state.progress(
                    name, ends=ends
                )  # recorded before the pass runs: a rerun redoes this pass
            rdir.mkdir(parents=True, exist_ok=True)
            rows = [{"seed": s.text, "licence": s.licence} for s in seeds[start : ends[-1]]]
            _write_records(seeds_file, rows)
            argv = self.generator_argv(round_no, seeds_file, gen)
            say(
                f"round {round_no} ({self.stage(round_no)}): generating from seeds {start}-{ends[-1]} (pass {len(ends)})"
            )
            delegated += self._run_generator(argv)
            finished = len(ends)
            self.state.progress(name, finished=finished)
        verified = _read_records(gen / DIALOGUES_FILE)
        others = _read_records(gen / REJECTED_FILE) + _read_records(gen / REMOVED_FILE)
        tokens, cost = _usage(verified + others)
        result = {
            "stage": self.stage(round_no),
            "seeds": [start, ends[-1] if ends else start],
            "passes": len(ends),
            "verified": len(verified),
            "rejected": len(_read_records(gen / REJECTED_FILE)),
            "removed": len(_read_records(gen / REMOVED_FILE)),
            "tokens": tokens,
            "cost_usd": round(cost, 6),
            "delegated_s": round(delegated, 3),
        }
        say(
            f"round {round_no}: {result['verified']} verified, {result['rejected']} rejected, "
            f"{result['removed']} removed, seeds {result['seeds'][0]}-{result['seeds'][1]}"
        )
        return result

    # -- split -----------------------------------------------------------------------------------------

    def _split(self, round_no: int, name: str) -> dict:
        rdir = self.round_dir(round_no)
        records = _read_records(rdir / "gen" / DIALOGUES_FILE)
        ids = sorted(r["id"] for r in records)
        random.Random(f"{self.config.split.seed}:{round_no}").shuffle(ids)
        n_test = round(len(ids) * self.config.split.test_share)
        if len(ids) >= 2:  # both parts non-empty whenever there are two items
            n_test = min(max(n_test, 1), len(ids) - 1)
        test_ids = set(ids[:n_test])
        _write_records(rdir / TEST_FILE, [r for r in records if r["id"] in test_ids])
        _write_records(rdir / TRAIN_FILE, [r for r in records if r["id"] not in test_ids])
        return {"test": len(test_ids), "train": len(records) - len(test_ids), "test_ids": sorted(test_ids)}

    # -- train -----------------------------------------------------------------------------------------

    def training_values(self, round_no: int, data: list[str], init: str, out: Path) -> dict:
        from training.config import load_config_file

        t = self.config.training
        values = load_config_file(t.config) if t.config else {}
        values.update(t.settings)
        values.update(base=init, data=data, out=str(out), resume=True)
        return values

    def _train(self, round_no: int, name: str) -> dict:
        data = [
            str(self.round_dir(r) / TRAIN_FILE)
            for r in range(round_no + 1)
            if self.state.result(step_name(r, "split"))["train"] > 0
        ]
        previous = self._student_for(round_no)
        if not data:
            return {"checkpoint": previous, "skipped": "no train items yet", "delegated_s": 0.0}
        if previous and self.state.result(step_name(round_no, "split"))["train"] == 0:
            # Nothing new to learn from (e.g. a self-learning round whose items were all rejected).
            return {"checkpoint": previous, "skipped": "no new train items", "delegated_s": 0.0}
        init = (
            previous if self.config.training.start_from == "last" and previous else self.config.student.base
        )
        out = self.round_dir(round_no) / "student"
        values = self.training_values(round_no, data, init, out)
        items = sum(self.state.result(step_name(r, "split"))["train"] for r in range(round_no + 1))
        say(f"round {round_no}: training the student from {init} on {items} items into {out}")
        started = time.monotonic()
        if self.config.training.launcher:
            self._launch_training(round_no, values)
        else:
            from training.config import SFTConfig
            from training.sft import run_sft

            config = SFTConfig(**values)
            config.validate()
            run_sft(config)
        return {
            "checkpoint": str(out),
            "from": init,
            "items": items,
            "delegated_s": round(time.monotonic() - started, 3),
        }

    def _launch_training(self, round_no: int, values: dict) -> None:
        import yaml

        config_file = self.round_dir(round_no) / "sft.yaml"
        write_atomically(config_file, yaml.safe_dump(values, sort_keys=True).encode())
        command = shlex.split(self.config.training.launcher) + ["--config", str(config_file)]
        say(f"round {round_no}: {shlex.join(command)}")
        code = subprocess.run(command, check=False).returncode
        if code != 0:
            raise AievError(
                f"training exited with status {code} (see its output above); rerun to resume from its last checkpoint"
            )

    # -- score -----------------------------------------------------------------------------------------

    def _backend(self, who: str, round_no: int):
        from llm.openai_backend import DEFAULT_MAX_RETRIES, DEFAULT_REQUEST_TIMEOUT_S
        from llm.options import backend_from_args

        c = self.config
        if who == "teacher":
            flags = Namespace(
                backend="openai",
                model=c.teacher.model or None,
                base_url=c.teacher.base_url,
                api_key=None,
                api_key_file=c.teacher.api_key_file,
                completions=False,
                tokenizer=None,
                max_retries=DEFAULT_MAX_RETRIES,
                request_timeout=DEFAULT_REQUEST_TIMEOUT_S,
                quantize="none",
                dtype=c.student.dtype,
            )
        else:
            flags = Namespace(
                backend="hf",
                model=self.state.result(step_name(round_no, "train"))["checkpoint"],
                quantize=c.student.quantize,
                dtype=c.student.dtype,
                base_url=None,
                api_key=None,
                api_key_file=None,
                tokenizer=None,
                max_retries=None,
                request_timeout=None,
                completions=False,
            )
        return backend_from_args(flags), flags.model

    def _score(self, round_no: int, who: str) -> dict:
        from evaluation.generation import GenerationConfig, generate, read_samples
        from evaluation.scoring import make_eval_sandbox, score_problems

        e = self.config.evaluation
        rdir = self.round_dir(round_no)
        if who == "teacher" and self.stage(round_no) == SELF_LEARNING:
            return {"skipped": "self-learning stage: the teacher is no longer asked", "delegated_s": 0.0}
        if who == "student" and not self.state.result(step_name(round_no, "train")).get("checkpoint"):
            return {"skipped": "no student trained yet", "delegated_s": 0.0}
        records = _read_records(rdir / TEST_FILE)
        if not records:
            return {"skipped": "no test items", "delegated_s": 0.0}
        problems = [item_problem(r) for r in records]
        out = rdir / "score" / who
        started = time.monotonic()
        backend, model = self._backend(who, round_no)
        try:
            sandbox = make_eval_sandbox(e.sandbox) if e.with_interpreter else None
            generate(
                backend,
                problems,
                out,
                GenerationConfig(
                    with_interpreter=e.with_interpreter,
                    max_new_tokens=e.max_new_tokens,
                    instruction=ITEM_INSTRUCTION,
                ),
                sandbox=sandbox,
                progress=self.progress,
                concurrency=e.concurrency,
            )
        finally:
            backend.close()
        # The items' tests were verified in a kernel without EvalPlus's guard (files, os), so none here.
        report = score_problems(
            problems,
            read_samples(out / "samples.jsonl"),
            sandbox=make_eval_sandbox(e.sandbox),
            workers=e.concurrency,
            use_cache=False,
            progress=False,
            guard=False,
        )
        delegated = time.monotonic() - started
        passed = sorted(report.passed_tasks())
        n = len(problems)
        low, high = wilson_interval(len(passed), n)
        result = {
            "model": model,
            "n": n,
            "passed": len(passed),
            "pass@1": len(passed) / n,
            "ci95": [round(low, 4), round(high, 4)],
            "passed_ids": passed,
            "with_interpreter": e.with_interpreter,
            "delegated_s": round(delegated, 3),
        }
        say(f"round {round_no}: {who} pass@1 {result['pass@1']:.3f} ({len(passed)}/{n})")
        return result

    def _score_teacher(self, round_no: int, name: str) -> dict:
        return self._score(round_no, "teacher")

    def _score_student(self, round_no: int, name: str) -> dict:
        return self._score(round_no, "student")

    # -- decide ----------------------------------------------------------------------------------------

    def _decide(self, round_no: int, name: str) -> dict:
        from interpreter.jsonl import JsonlAppender, read_jsonl

        stage = self.stage(round_no)
        teacher = self.state.result(step_name(round_no, "score_teacher"))
        student = self.state.result(step_name(round_no, "score_student"))
        numbers = {
            who: {k: r[k] for k in ("pass@1", "passed", "n", "ci95") if k in r}
            or {"skipped": r.get("skipped")}
            for who, r in (("teacher", teacher), ("student", student))
        }
        if stage == SELF_LEARNING:
            after, why = SELF_LEARNING, "already in the self-learning stage"
        elif "pass@1" not in teacher or "pass@1" not in student:
            after, why = TEACHING, f"no comparison ({teacher.get('skipped') or student.get('skipped')})"
        else:
            t, s = teacher["pass@1"], student["pass@1"]
            better = s > t if self.config.comparison == "strictly_better" else s >= t
            after = SELF_LEARNING if better else TEACHING
            relation = ">" if s > t else "=" if s == t else "<"
            why = f"student {s:.4f} {relation} teacher {t:.4f} ({self.config.comparison})"
        decision = {
            "round": round_no,
            "stage_before": stage,
            "stage_after": after,
            "switch": after != stage,
            "rule": self.config.comparison,
            "why": why,
            **numbers,
        }
        path = self.dir / DECISIONS_FILE
        logged = path.exists() and any(d.get("round") == round_no for d in read_jsonl(path))
        if not logged:  # a rerun after a kill between this append and the state's update appends nothing
            with JsonlAppender(path) as log:
                log.append(decision)
        say(f"round {round_no} decision: {why} -> {after}")
        return decision

    # -- summary ---------------------------------------------------------------------------------------

    def summary_line(self) -> str:
        rounds = sorted({int(n[1:3]) for n in self.state.steps})
        items = sum(
            self.state.result(step_name(r, "generate"))["verified"]
            for r in rounds
            if self.state.done(step_name(r, "generate"))
        )
        return f"{len(rounds)} rounds, {items} verified items, stage now {self.stage(len(rounds))}"
