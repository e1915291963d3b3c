"""fieldlab's lab half: Playwright user flows and Lighthouse audits, run safely and with evidence.

Never imports ``app/``: ``fieldlab gate`` uses it in CI without a server. Nothing happens at
import time; a browser starts only when a run needs one.

* :mod:`probes.browser` - ``find_chromium``, ``BrowserPool`` (one warm browser, a context per
  run, ``kill_tree``), ``DEVICES``, ``THROTTLING``
* :mod:`probes.flow` - ``load_flow_file``, ``run_flow`` -> ``FlowResult``
* :mod:`probes.declarative` - ``flow_from_steps`` for JSON/YAML steps
* :mod:`probes.lighthouse` - ``run_lighthouse`` -> ``LighthouseResult``, ``choose_representative``
* :mod:`probes.safety` - ``TargetPolicy``, ``TargetRefused``, ``guard``; :mod:`probes.egress`
* ``python -m probes FLOW --url BASE`` runs a flow once
"""
