"""Per-page removal entries of ``bench/recheck_claims.py``: one module per threat model page.

Each module defines ``ROWS``; ``PAGES`` lists them in the order the runner
reads them. Kept apart so that rows of different pages are edited apart.
"""
