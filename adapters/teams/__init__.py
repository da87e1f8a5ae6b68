"""Microsoft Teams through the Bot Framework (botbuilder-core): every botbuilder import of
Clearance lives in this package, so moving to its successor SDK stays a contained change."""
