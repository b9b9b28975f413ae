"""Exports of wm artifacts to other ecosystems' formats."""
