"""SIPp reference benchmark (see run_sipp_reference.py)."""
