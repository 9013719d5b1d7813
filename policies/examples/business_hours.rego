# Business hours: reads at any time; anything else only while someone is around to notice,
# Monday to Friday 09:00-18:00 in `timezone`. Outside those hours it is escalated, so a person
# approves it (`behavry approve`).
#
# An example in a package of its own; to enforce it, change the package line to
# `package behavry.authz` (and `timezone` to yours) and install it with `behavry policy add`.
package behavry.examples.business_hours

import rego.v1

# An IANA time zone name, e.g. "Europe/Berlin" or "America/New_York".
timezone := "UTC"

opening_hour := 9

closing_hour := 18

workdays := {"Monday", "Tuesday", "Wednesday", "Thursday", "Friday"}

looking := {"read", "list", "search", "prompt"}

in_business_hours if {
	now := [time.now_ns(), timezone]
	time.weekday(now) in workdays
	[hour, _, _] := time.clock(now)
	hour >= opening_hour
	hour < closing_hour
}

allow if input.action.type in looking

allow if in_business_hours

escalate if {
	not input.action.type in looking
	not in_business_hours
}

reasons contains sprintf("outside business hours (Monday to Friday, %02d:00-%02d:00 %s) %s calls need approval", [opening_hour, closing_hour, timezone, input.action.type]) if escalate
