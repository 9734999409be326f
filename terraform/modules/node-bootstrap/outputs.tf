output "user_data" {
  description = "The user data script (bash) that installs and starts the node."
  value       = local.user_data
}

output "units" {
  description = "The systemd units the user data installs, by file name."
  value       = local.units
}

output "node_env" {
  description = "Contents of /etc/switchboard/node.env, the node settings the helper scripts read."
  value       = local.node_env
}
