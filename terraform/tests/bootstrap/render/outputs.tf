output "user_data" {
  description = "The rendered user data."
  value       = module.bootstrap.user_data
}

output "units" {
  description = "The units, by file name."
  value       = module.bootstrap.units
}
