package behavry.authz

import future.keywords.if

# Allow all actions for the developer role
allow if {
input.agent.role == "developer"
input.action.type in {"read", "list"}
}

# Deny write actions to production paths
deny if {
input.action.type == "write"
startswith(input.resource.path, "/prod/")
}

# Escalate file deletions
escalate if {
input.action.type == "delete"
}
