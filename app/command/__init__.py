"""The write side: decide each op against a warm write model and append it with group commit."""

from app.command.handler import Ack, CommandHandler

__all__ = ["Ack", "CommandHandler"]
