"""Execution planning (pure): target notionals vs holdings → order intents and child orders."""

from tradebot.core.execution.planner import Denial, Plan, PlannerConfig, plan_rebalance
from tradebot.core.execution.slicing import slice_qty

__all__ = ["Denial", "Plan", "PlannerConfig", "plan_rebalance", "slice_qty"]
