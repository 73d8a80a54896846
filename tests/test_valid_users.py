"""train.valid_users: early stopping judged on a fixed seeded sample of validation users, declared in the hash."""

from __future__ import annotations

import numpy as np

from recbench import runner
from recbench.config import _without_new_defaults, expand, recipe_from_dict
from recbench.data.splits import EvalSet


def spec_for(data_dir, **train):
    recipe = recipe_from_dict(
        {
            "name": "valid-users",
            "dataset": {"name": "movielens-100k", "data_dir": str(data_dir)},
            "encoder": {"kind": "id"},
            "backbone": {"kind": "sasrec", "dim": 16, "layers": 1, "heads": 1, "inner": 32},
            "train": {"max_len": 12, "batch_size": 16, "max_epochs": 3, "patience": 5, **train},
            "eval": {"ks": [1, 10]},
        }
    )
    (spec,) = expand(recipe)
    return spec


def test_unset_valid_users_leaves_the_hashes_of_stored_runs_as_they_were(tiny_ml_dir):
    plain, sampled = spec_for(tiny_ml_dir), spec_for(tiny_ml_dir, valid_users=20)
    dumped = _without_new_defaults(plain.model_dump(mode="json"))
    assert "valid_users" not in dumped["train"]  # the dump (and hash) a run had before the field existed
    assert plain.recipe_hash != sampled.recipe_hash and plain.config_hash != sampled.config_hash
    assert plain.protocol() == sampled.protocol()  # the final metrics rank every user: same table


def test_the_sample_is_seeded_fixed_and_a_subset():
    valid = EvalSet(np.arange(50), [np.array([i + 1]) for i in range(50)], np.arange(50) + 2)
    a, b = runner.validation_sample(valid, 10, seed=3), runner.validation_sample(valid, 10, seed=3)
    assert len(a) == 10 and a.users.tolist() == b.users.tolist() == sorted(a.users.tolist())
    assert a.users.tolist() != runner.validation_sample(valid, 10, seed=4).users.tolist()
    assert a.targets.tolist() == [u + 2 for u in a.users.tolist()]
    assert (
        runner.validation_sample(valid, None, 0) is valid and runner.validation_sample(valid, 80, 0) is valid
    )


def test_epochs_are_judged_on_the_sample_and_the_run_reports_every_user(tiny_ml_dir, monkeypatch):
    seen: list[tuple[int, ...]] = []
    evaluate = runner.evaluate

    def recording(score_fn, eval_set, *args, **kwargs):
        seen.append(tuple(eval_set.users.tolist()))
        return evaluate(score_fn, eval_set, *args, **kwargs)

    monkeypatch.setattr(runner, "evaluate", recording)
    result = runner.run_spec(spec_for(tiny_ml_dir, valid_users=20), tracker=None)
    per_epoch, final = seen[:-2], seen[-2:]
    assert len(per_epoch) == len(result.history) == 3
    assert all(len(users) == 20 for users in per_epoch) and len(set(per_epoch)) == 1
    assert [len(users) for users in final] == [80, 80]  # validation and test: every user
    assert result.metrics["valid"]["ndcg@10"] >= 0
