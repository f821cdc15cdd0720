"""The configuration of jobkit: attrs classes, ``jobs.yaml`` loading, layering and provenance.

:func:`load_config` reads ``jobs.yaml`` (safe YAML only) and the ``JOBKIT_*`` environment. Every
unknown key, wrong type and bad value is reported, all at once, in one ``ConfigError`` whose
messages name the file, line and key (``jobs.yaml:12: jobs.Email.retry_attempts: expected an
integer >= 0, got 'five'``) or the environment variable at fault.

The settings of one job are resolved by :meth:`Config.resolve_job` from these layers, lowest
first; a layer overrides only the keys it sets, and ``ResolvedJob.sources`` names the layer that
set each value:

1. ``built-in``: the defaults of :class:`JobSettings`;
2. the ``defaults:`` section of ``jobs.yaml`` (``jobs.yaml:4 (defaults)``);
3. the defaults the job's package ships in ``Job.defaults`` (``package <name>``);
4. the job's ``jobs.<name>`` entry in ``jobs.yaml`` (``jobs.yaml:9 (jobs.Email)``);
5. ``JOBKIT_DEFAULTS__<KEY>`` variables, for every job (``environment JOBKIT_DEFAULTS__<KEY>``);
6. ``JOBKIT_JOBS__<NAME>__<KEY>`` variables, the job name matched case-insensitively;
7. the arguments of one call (``call``): ``retry_attempts``, ``retry_delay``, ``timeout`` and
   ``priority``; ``None`` means not given.

The environment overrides the other sections too: ``JOBKIT_STORAGE``, ``JOBKIT_LOGGING__<KEY>``,
``JOBKIT_WORKER__<KEY>``, ``JOBKIT_DASHBOARD__<KEY>`` and ``JOBKIT_RETENTION__<STATUS>``. A
value is read as a YAML scalar (``5``, ``1.5``, ``null``); a string setting keeps the raw text
when YAML reads it as something else (``00:00``). Only
:func:`load_config` reads the environment; ``Config()`` and ``Config.from_dict`` never do.

The configuration's modules: :mod:`~jobkit.config.settings` (the sections, each an attrs class),
:mod:`~jobkit.config.model` (:class:`Config`, built from data, and the layers resolved),
:mod:`~jobkit.config.environ` (the ``JOBKIT_*`` variables) and :mod:`~jobkit.config.loading`
(the file), :mod:`~jobkit.config.retention` (``retention:``); :mod:`jobkit.config_yaml` holds
the machinery under them. Import from here.
"""

from __future__ import annotations

from jobkit.config import settings
from jobkit.config.environ import EnvValue
from jobkit.config.loading import load_config, raw_notifications
from jobkit.config.model import Config
from jobkit.config.retention import Retention
from jobkit.config.settings import *  # noqa: F403  (the sections: settings.__all__)

__all__ = ["Config", "EnvValue", "Retention", "load_config", "raw_notifications",
           *settings.__all__]
