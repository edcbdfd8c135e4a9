"""The admin page's HTML (Jinja2, autoescaped). Forms are only rendered for administrators."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from jinja2 import Environment, select_autoescape

BRUSSELS = ZoneInfo("Europe/Brussels")

TEMPLATE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Rollout administration · dijlepost</title>
<style>
  body { font: 14px/1.45 system-ui, sans-serif; margin: 1.2rem; color: #1b1f24; background: #fff; }
  h1 { font-size: 1.35rem; margin: 0 0 .3rem; } h2 { font-size: 1.1rem; margin: 1.4rem 0 .4rem; }
  h3 { font-size: .95rem; margin: .9rem 0 .3rem; }
  table { border-collapse: collapse; margin: .3rem 0 .6rem; } caption { text-align: left; font-weight: 600; }
  th, td { border: 1px solid #d0d7de; padding: .25rem .5rem; text-align: left; vertical-align: top; }
  th { background: #f6f8fa; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
  section.dept { border: 1px solid #d0d7de; border-radius: 6px; padding: .6rem 1rem; margin: .8rem 0; }
  .phase { font-weight: 700; padding: .05rem .45rem; border-radius: 4px; background: #ddf4ff; }
  .phase.off { background: #eaeef2; } .phase.paper { background: #fff8c5; } .phase.shadow { background: #fbefff; }
  .phase.pilot { background: #ddf4ff; } .phase.live { background: #dafbe1; }
  .who { color: #57606a; } .alert { border: 1px solid #cf222e; background: #ffebe9; padding: .5rem .8rem; }
  .notice { border: 1px solid #1a7f37; background: #dafbe1; padding: .5rem .8rem; }
  form.inline { display: flex; flex-wrap: wrap; gap: .5rem; align-items: end; margin: .4rem 0; }
  form.inline label { display: flex; flex-direction: column; font-size: .85rem; }
  input[type=text] { min-width: 16rem; } .readonly { color: #57606a; font-style: italic; }
</style>
</head>
<body>
<header>
  <h1>Rollout administration</h1>
  <p class="who">Signed in as <strong id="user">{{ who.name }}</strong> ·
  {% if who.is_admin %}<span id="access">administrator: you may change phases and exemptions</span>
  {% else %}<span id="access" class="readonly">read-only: only administrators may change anything</span>{% endif %}
  · a change takes effect at the next run of the department's wave DAG.</p>
</header>
{% if error %}<p class="alert" role="alert" id="error">{{ error }}</p>{% endif %}
{% if notice %}<p class="notice" role="status" id="notice">{{ notice }}</p>{% endif %}

{% for d in departments %}
<section class="dept" id="dept-{{ d.department }}" aria-labelledby="title-{{ d.department }}">
  <h2 id="title-{{ d.department }}">{{ d.title }} (<code>{{ d.department }}</code>):
    <span class="phase {{ d.phase }}" id="phase-{{ d.department }}">{{ d.phase }}</span></h2>
  <p>Pilot group: {{ d.pilot_size }} on the allowlist, {{ d.pilot_percent }} % by hash.
     Last change {{ d.changed_at | when }} by {{ d.changed_by }}: “{{ d.reason }}”.</p>

  <table aria-label="recent runs of {{ d.department }}">
    <caption>Recent runs</caption>
    <tr><th>run</th><th>phase</th><th>started</th><th>eBox</th><th>paper</th><th>quarantined</th><th>unfinished</th></tr>
    {% for r in d.recent_runs %}
    <tr><td>{% if r.url %}<a href="{{ r.url }}" title="this run in Airflow: its grid, tasks and logs"><code>{{ r.run }}</code></a>{% else %}<code>{{ r.run }}</code>{% endif %}</td><td>{{ r.phases or "" }}</td><td>{{ r.started | when }}</td>
        <td class="n">{{ r.ebox }}</td><td class="n">{{ r.paper }}</td><td class="n">{{ r.quarantined }}</td>
        <td class="n">{{ r.unfinished }}</td></tr>
    {% else %}<tr><td colspan="7">no runs yet</td></tr>{% endfor %}
  </table>

  {% if d.shadow_report %}{% set s = d.shadow_report %}
  <table aria-label="shadow report of {{ d.department }}" id="shadow-{{ d.department }}">
    <caption>Shadow report: letters decided in phase shadow</caption>
    <tr><th>letters decided</th><td class="n">{{ s.decided }}</td></tr>
    <tr><th>would have gone to the eBox</th><td class="n">{{ s.would_be_ebox }}
      ({{ s.digital_share | pct }} of the sendable letters)</td></tr>
    <tr><th>on paper anyway</th><td class="n">{{ s.would_be_paper }}</td></tr>
    <tr><th>quarantined</th><td class="n">{{ s.quarantined }}</td></tr>
    <tr><th>postage saved</th><td class="n">€ {{ s.postage_saving | eur }}</td></tr>
    <tr><th>printing saved</th><td class="n">€ {{ s.printing_saving | eur }}</td></tr>
    <tr><th>total saved</th><td class="n"><strong>€ {{ s.total_saving | eur }}</strong></td></tr>
  </table>
  <p class="who">Tariffs: postage € {{ tariffs.postage | eur }} (+ € {{ tariffs.registered_surcharge | eur }}
    registered), printing € {{ tariffs.print_per_letter | eur }} per letter + € {{ tariffs.print_per_extra_page | eur }}
    per extra page + € {{ tariffs.print_per_extra_sheet | eur }} per extra sheet (printed duplex); source:
    {{ tariffs.source }}.{% if s.pages_estimated %} {{ s.pages_estimated }} letters not
    rendered yet are counted as one page.{% endif %}</p>
  {% endif %}

  <table aria-label="history of {{ d.department }}">
    <caption>History</caption>
    <tr><th>when</th><th>who</th><th>from</th><th>to</th><th>pilot</th><th>reason</th></tr>
    {% for h in d.history %}
    <tr><td>{{ h.changed_at | when }}</td><td>{{ h.changed_by }}</td><td>{{ h.from_phase or "–" }}</td>
        <td>{{ h.to_phase }}</td><td>{% if h.pilot_percent is not none %}{{ h.pilot_size }} + {{ h.pilot_percent }} %{% endif %}</td>
        <td>{{ h.reason }}</td></tr>
    {% endfor %}
  </table>

  {% if who.is_admin %}
  <form class="inline" method="post" action="{{ prefix }}/departments/{{ d.department }}/phase"
        aria-label="change the phase of {{ d.department }}">
    <label>New phase
      <select name="phase" id="phase-select-{{ d.department }}">
        {% for p in phases %}<option value="{{ p }}"{% if p == d.phase %} selected{% endif %}>{{ p }}</option>{% endfor %}
      </select></label>
    <label>Pilot percentage (0–100, empty keeps {{ d.pilot_percent }})
      <input type="number" name="pilot_percent" min="0" max="100" id="pilot-percent-{{ d.department }}"></label>
    <label>Reason (required)
      <input type="text" name="reason" id="reason-{{ d.department }}" required></label>
    <button type="submit" id="submit-{{ d.department }}">Change phase of {{ d.department }}</button>
  </form>
  {% endif %}
</section>
{% endfor %}

<h2 id="exemptions">Paper exemptions</h2>
<p>Recipients who keep paper whatever their eBox says (rule <code>paper_preference</code>), by pseudonym.</p>
<table aria-label="paper exemptions">
  <tr><th>recipient</th><th>since</th><th>by</th><th>reason</th>{% if who.is_admin %}<th>remove</th>{% endif %}</tr>
  {% for e in exemptions %}
  <tr><td><code>{{ e.recipient_pseudonym }}</code></td><td>{{ e.added_at | when }}</td><td>{{ e.added_by }}</td>
      <td>{{ e.reason }}</td>
      {% if who.is_admin %}<td>
        <form class="inline" method="post" action="{{ prefix }}/exemptions/remove">
          <input type="hidden" name="recipient_pseudonym" value="{{ e.recipient_pseudonym }}">
          <label>Reason <input type="text" name="reason" required></label>
          <button type="submit">Remove</button></form></td>{% endif %}</tr>
  {% else %}<tr><td colspan="5">no paper exemptions</td></tr>{% endfor %}
</table>
{% if who.is_admin %}
<form class="inline" method="post" action="{{ prefix }}/exemptions/add" aria-label="add a paper exemption">
  <label>Kind <select name="kind"><option value="citizen">citizen</option>
    <option value="enterprise">enterprise</option></select></label>
  <label>National register / KBO number, or pseudonym (r-…)
    <input type="text" name="recipient" id="exemption-recipient" autocomplete="off" required></label>
  <label>Reason (required) <input type="text" name="reason" id="exemption-reason" required></label>
  <button type="submit" id="exemption-add">Add paper exemption</button>
</form>
{% endif %}
<table aria-label="exemption history">
  <caption>Exemption history</caption>
  <tr><th>when</th><th>who</th><th>action</th><th>recipient</th><th>reason</th></tr>
  {% for h in exemption_history %}
  <tr><td>{{ h.changed_at | when }}</td><td>{{ h.changed_by }}</td><td>{{ h.action }}</td>
      <td><code>{{ h.recipient_pseudonym }}</code></td><td>{{ h.reason }}</td></tr>
  {% endfor %}
</table>

<h2>All phase changes</h2>
<table aria-label="rollout history" id="history">
  <tr><th>when</th><th>department</th><th>who</th><th>from</th><th>to</th><th>reason</th></tr>
  {% for h in history %}
  <tr><td>{{ h.changed_at | when }}</td><td>{{ h.department }}</td><td>{{ h.changed_by }}</td>
      <td>{{ h.from_phase or "–" }}</td><td>{{ h.to_phase }}</td><td>{{ h.reason }}</td></tr>
  {% endfor %}
</table>
</body>
</html>
"""


def _when(value) -> str:
    """A moment in Europe/Brussels (CET/CEST), whatever the session's time zone; a date as it is."""
    if value is None or not hasattr(value, "strftime"):
        return ""
    if isinstance(value, datetime) and value.tzinfo is not None:
        value = value.astimezone(BRUSSELS)
    return value.strftime("%Y-%m-%d %H:%M %Z").strip()


def _eur(value) -> str:
    return f"{Decimal(str(value)):,.2f}"


def _pct(value) -> str:
    return "–" if value is None else f"{value * 100:.1f} %"


_env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
_env.filters.update(when=_when, eur=_eur, pct=_pct)
_template = _env.from_string(TEMPLATE)


def render_page(**context) -> str:
    return _template.render(**context)
