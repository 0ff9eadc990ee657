"""Microsoft Teams adapter on the Bot Framework SDK (botbuilder-python).

Every botbuilder import of the project lives in this package, so moving to the
Microsoft 365 Agents SDK is a change to this folder only.
"""
