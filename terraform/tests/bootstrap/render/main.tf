# Renders the node user data exactly as modules/asg does (through the
# node-bootstrap module) with test inputs, for the sandbox tests next to this
# folder. No provider: `terraform apply` here only evaluates templates.
terraform {
  required_version = ">= 1.9.0"
}

module "bootstrap" {
  source = "../../../modules/node-bootstrap"

  install_method = var.install_method
  image          = "ghcr.io/switchboard-dev/switchboard:1.2.3"
  binary_url     = "https://releases.example.com/v1.2.3/switchboard-1.2.3-aarch64-unknown-linux-musl.tar.gz"
  binary_sha256  = var.binary_sha256
  environment = {
    PORT               = "8080"
    HOST               = "0.0.0.0"
    SERVER_REGION      = "eu-west-1"
    LOG_FORMAT         = "json"
    DRAIN_TIMEOUT_SECS = "15"
    MAX_CONNECTIONS    = "10000"
    # Characters systemd's environment file parser treats specially.
    JWT_ISSUER = "https://issuer.example.com/a b \"quoted\" $HOME \\n"
  }
  server_secrets = {
    JWT_SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:sb/jwt-AbCdEf"
  }
  region             = "eu-west-1"
  port               = 8080
  redis_host         = "master.sb-redis.abcdef.euw1.cache.amazonaws.com"
  redis_port         = 6379
  redis_secret_arn   = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:sb/redis-auth-token-AbCdEf"
  auth_token_version = "11111111-2222-3333-4444-555555555555"
  stop_timeout       = 25
  asg_name           = "sb-nodes"
  hook_name          = "sb-drain"
  log_group          = "/sb/server"
}
