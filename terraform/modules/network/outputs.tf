output "vpc_id" {
  description = "ID of the VPC."
  value       = aws_vpc.this.id
}

output "public_subnet_ids" {
  description = "IDs of the public subnets (load balancer, NAT gateways)."
  value       = aws_subnet.public[*].id
}

output "private_subnet_ids" {
  description = "IDs of the private subnets (instances, Redis)."
  value       = aws_subnet.private[*].id
}

output "availability_zones" {
  description = "Availability zones the subnets are in."
  value       = local.azs
}
