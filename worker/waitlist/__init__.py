"""The waitlist (issue 16): patients who could not get the time they wanted are texted, in order, when a
fitting slot opens; the first YES books it.

- ``store``: the tables' shared reads and writes (join, list, remove, the entries an opening could go to, the
  provider a patient saw last);
- ``joining``: the agent's ``join_waitlist`` tool, a tool in ``worker/tools/waitlist.py``;
- ``offers``: the scheduled job — lapse holds, close openings too close to book, offer the next fitting person;
- ``replies``: a YES to an offer, booked through the agent's own booking tool.

The rules are ``domain/waitlist.py``; openings are recorded by a trigger on ``appointments`` (migration 0013).
"""
