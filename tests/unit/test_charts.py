"""The charting library's script is found in the installed wheel, and it is the major version the pages use."""

from shared.charts import MAJOR_VERSION, lightweight_charts_script, lightweight_charts_version


def test_the_chart_script_comes_from_the_installed_wheel_at_the_expected_major_version():
    script = lightweight_charts_script()
    assert "site-packages" in script.parts  # installed from the package index, not a copy in this repository
    assert script.stat().st_size > 100_000  # the minified standalone build (~180 kB)
    assert lightweight_charts_version().startswith(f"{MAJOR_VERSION}.")
    assert "LightweightCharts" in script.read_text(encoding="utf-8")  # the global the pages use
