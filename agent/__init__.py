"""The partner side: the agent, and the coordinator's, privacy officer's and
administrator's clients.

Public surface: :class:`Agent` / :class:`AgentSettings`, :class:`CoordinatorDesk` /
:class:`CoordinatorSettings`, :class:`Auditor` / :class:`AuditSettings`,
:class:`Admin` / :class:`AdminSettings`, and :class:`Identity` (an opened envelope).
"""

from agent._admin import Admin, AdminSettings
from agent._agent import Agent, AgentSettings, SubmitSummary
from agent._auditor import Auditor, AuditSettings
from agent._coordinator import CoordinatorDesk, CoordinatorSettings, OpenedSignal
from agent._identity import Identity

__all__ = [
    "Admin",
    "AdminSettings",
    "Agent",
    "AgentSettings",
    "AuditSettings",
    "Auditor",
    "CoordinatorDesk",
    "CoordinatorSettings",
    "Identity",
    "OpenedSignal",
    "SubmitSummary",
]
