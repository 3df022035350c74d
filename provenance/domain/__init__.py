"""Judgement over a lot's facts, pure: cold-chain excursions and budgets,
custody legs, and the rules engine's conditions.
"""
