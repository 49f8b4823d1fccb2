"""The test suite: tests/unit (pure, fast), tests/integration (real Redis), tests/system (slow); helpers in
tests/support. CONTRIBUTING.md says how to run them."""
