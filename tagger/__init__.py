"""tagger: the daily content-tagging job (see README.md).

Installed, the repository's top-level folders are subpackages of this one (setup.py's
package_dir): udfs/ -> tagger.udfs, models/ -> tagger.models, jobs/ -> tagger.jobs, and sql/ and
conf/ are package data. In a plain source checkout that is on sys.path but not installed (an
Airflow worker that imports the DAG's helpers from the repository, a GPU machine without pip),
the same folders are found through this package's search path, so both layouts import alike.
"""
import os as _os

_REPO = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if _os.path.isfile(_os.path.join(_REPO, "setup.py")) and _os.path.isdir(_os.path.join(_REPO, "udfs")):
    __path__.append(_REPO)  # noqa: F821 - a package's __path__; tagger.udfs -> <repo>/udfs, ...
