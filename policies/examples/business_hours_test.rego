package behavry.examples.business_hours_test

import rego.v1

import data.behavry.examples.business_hours

# Wednesday 2024-01-03 10:00 UTC, 20:00 UTC, 08:59:59 UTC, 09:00 UTC; Saturday 2024-01-06 10:00 UTC.
wednesday_10 := 1704276000000000000

wednesday_20 := 1704312000000000000

wednesday_0859 := 1704272399000000000

wednesday_09 := 1704272400000000000

saturday_10 := 1704535200000000000

write := {"action": {"type": "write", "tool": "fs/write_file"}}

test_changes_are_allowed_in_business_hours if {
	business_hours.allow with input as write with time.now_ns as wednesday_10
	not business_hours.escalate with input as write with time.now_ns as wednesday_10
	business_hours.allow with input as write with time.now_ns as wednesday_09
}

test_changes_are_escalated_at_night if {
	business_hours.escalate with input as write with time.now_ns as wednesday_20
	business_hours.escalate with input as write with time.now_ns as wednesday_0859
	business_hours.reasons == {"outside business hours (Monday to Friday, 09:00-18:00 UTC) write calls need approval"} with input as write
		with time.now_ns as wednesday_20
}

test_changes_are_escalated_at_weekends if {
	business_hours.escalate with input as write with time.now_ns as saturday_10
}

test_reads_are_allowed_at_any_time if {
	business_hours.allow with input as {"action": {"type": "read"}} with time.now_ns as saturday_10
	not business_hours.escalate with input as {"action": {"type": "read"}} with time.now_ns as saturday_10
}

test_the_time_zone_counts if {
	# 20:00 UTC on a Wednesday is 12:00 in Los Angeles.
	business_hours.allow with input as write with time.now_ns as wednesday_20
		with business_hours.timezone as "America/Los_Angeles"
}
