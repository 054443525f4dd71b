"""Test-only code shipped with capsvc: fault hooks that production configuration cannot enable
(see `capsvc.testing.faults`)."""
