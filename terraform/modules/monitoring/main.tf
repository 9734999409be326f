# CloudWatch view of the stack: one dashboard, the alarms that matter for a
# signaling fleet, and optionally the SNS topic they notify. The node metrics
# (namespace metrics_namespace) come from switchboard-metrics.timer on every
# node, see modules/node-bootstrap.

locals {
  create_topic  = var.alarm_topic_arn == null && length(var.alarm_emails) > 0
  alarm_actions = var.alarm_topic_arn != null ? [var.alarm_topic_arn] : (local.create_topic ? [aws_sns_topic.alarms[0].arn] : [])

  ns  = var.metrics_namespace
  asg = var.asg_name
  lb  = var.alb_arn_suffix
  tg  = var.target_group_arn_suffix

  connections_alarm_threshold = floor(var.max_connections * var.connections_alarm_ratio)
}

resource "aws_sns_topic" "alarms" {
  count = local.create_topic ? 1 : 0

  name              = "${var.name}-alarms"
  kms_master_key_id = var.kms_key_arn
}

resource "aws_sns_topic_subscription" "email" {
  for_each = local.create_topic ? toset(var.alarm_emails) : toset([])

  topic_arn = aws_sns_topic.alarms[0].arn
  protocol  = "email"
  endpoint  = each.value
}

# --- alarms -------------------------------------------------------------------

# Nodes the load balancer does not route to: /ready failing (Redis
# unreachable from that node, draining, or a node that never came up). Also
# the signal that stops an instance refresh rolling out a broken version.
resource "aws_cloudwatch_metric_alarm" "unhealthy_targets" {
  alarm_name        = "${var.name}-unhealthy-targets"
  alarm_description = "Nodes fail the load balancer's /ready check for 3 minutes. Check the nodes' logs and the RedisReachable metric; during an instance refresh this alarm rolls the refresh back."
  namespace         = "AWS/ApplicationELB"
  metric_name       = "UnHealthyHostCount"
  dimensions = {
    LoadBalancer = local.lb
    TargetGroup  = local.tg
  }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 3
  datapoints_to_alarm = 3
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# Failed requests, whether the load balancer produced them (no healthy
# target, a node that closed the connection) or a node did.
resource "aws_cloudwatch_metric_alarm" "http_5xx" {
  alarm_name          = "${var.name}-http-5xx"
  alarm_description   = "More than ${var.alb_5xx_threshold} 5xx responses in 5 minutes from the load balancer or the nodes. 503 from a node means it is full (MAX_CONNECTIONS) or draining; 502/504 from the load balancer mean nodes went away."
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.alb_5xx_threshold
  evaluation_periods  = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  metric_query {
    id          = "total"
    expression  = "FILL(elb, 0) + FILL(target, 0)"
    label       = "5xx responses"
    return_data = true
  }

  metric_query {
    id = "elb"
    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "HTTPCode_ELB_5XX_Count"
      dimensions  = { LoadBalancer = local.lb }
      stat        = "Sum"
      period      = 300
    }
  }

  metric_query {
    id = "target"
    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "HTTPCode_Target_5XX_Count"
      dimensions  = { LoadBalancer = local.lb, TargetGroup = local.tg }
      stat        = "Sum"
      period      = 300
    }
  }
}

# Any node that cannot reach Redis for 2 minutes. The nodes keep serving
# their own clients meanwhile; cross-node signaling and new joins suffer.
resource "aws_cloudwatch_metric_alarm" "redis_unreachable" {
  alarm_name          = "${var.name}-redis-unreachable"
  alarm_description   = "A node has not reached Redis for 2 minutes (its /ready reports backend_unavailable). Check the ElastiCache events, the security groups and the auth token."
  namespace           = local.ns
  metric_name         = "RedisReachable"
  dimensions          = { AutoScalingGroupName = local.asg }
  statistic           = "Minimum"
  period              = 60
  evaluation_periods  = 2
  datapoints_to_alarm = 2
  comparison_operator = "LessThanThreshold"
  threshold           = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# One node close to the connections it accepts: it will soon answer 503 to
# new clients. Scaling follows the group average, which can hide one hot node.
resource "aws_cloudwatch_metric_alarm" "connections_near_max" {
  alarm_name          = "${var.name}-connections-near-max"
  alarm_description   = "A node holds more than ${local.connections_alarm_threshold} WebSocket connections (${floor(var.connections_alarm_ratio * 100)}% of MAX_CONNECTIONS ${var.max_connections}) for 3 minutes. Raise max_size, lower connections_target or use larger instances."
  namespace           = local.ns
  metric_name         = "Connections"
  dimensions          = { AutoScalingGroupName = local.asg }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 3
  datapoints_to_alarm = 3
  comparison_operator = "GreaterThanThreshold"
  threshold           = local.connections_alarm_threshold
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "redis_memory" {
  count = length(var.redis_cluster_ids)

  alarm_name          = "${var.name}-redis-memory-${var.redis_cluster_ids[count.index]}"
  alarm_description   = "Redis node ${var.redis_cluster_ids[count.index]} uses more than ${var.redis_memory_threshold}% of its memory for 10 minutes. Switchboard's keys expire on their own; growth means many rooms or a leak: use a larger redis_node_type."
  namespace           = "AWS/ElastiCache"
  metric_name         = "DatabaseMemoryUsagePercentage"
  dimensions          = { CacheClusterId = var.redis_cluster_ids[count.index] }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 2
  datapoints_to_alarm = 2
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.redis_memory_threshold
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# Evictions drop room membership and presence that nodes still rely on.
resource "aws_cloudwatch_metric_alarm" "redis_evictions" {
  count = length(var.redis_cluster_ids)

  alarm_name          = "${var.name}-redis-evictions-${var.redis_cluster_ids[count.index]}"
  alarm_description   = "Redis node ${var.redis_cluster_ids[count.index]} evicted keys: it is out of memory and drops room state. Use a larger redis_node_type."
  namespace           = "AWS/ElastiCache"
  metric_name         = "Evictions"
  dimensions          = { CacheClusterId = var.redis_cluster_ids[count.index] }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# --- dashboard -------------------------------------------------------------------

locals {
  search = {
    connections_per_instance = "SEARCH('{${local.ns},AutoScalingGroupName,InstanceId} MetricName=\"Connections\" AutoScalingGroupName=\"${local.asg}\"', 'Average', 60)"
    messages_in_by_type      = "SEARCH('{${local.ns},AutoScalingGroupName,Type} MetricName=\"MessagesIn\" AutoScalingGroupName=\"${local.asg}\"', 'Sum', 60)"
  }

  # [title, metrics, extra properties]; laid out two per row below.
  widgets = [
    {
      title = "WebSocket connections per instance"
      metrics = [
        [{ expression = local.search.connections_per_instance, id = "per_instance", label = "" }],
        [local.ns, "Connections", "AutoScalingGroupName", local.asg, { stat = "Average", label = "average (scaling target)" }],
      ]
      extra = {
        annotations = { horizontal = [{ label = "MAX_CONNECTIONS", value = var.max_connections }] }
      }
    },
    {
      title = "Messages per second"
      metrics = [
        [{ expression = local.search.messages_in_by_type, id = "in_by_type", label = "in" }],
        [local.ns, "MessagesOut", "AutoScalingGroupName", local.asg, { stat = "Sum", label = "out (all types)" }],
      ]
      extra = {}
    },
    {
      title = "Joined peers and refused connections"
      metrics = [
        [local.ns, "PeersJoined", "AutoScalingGroupName", local.asg, { stat = "Sum", label = "peers joined (all nodes)" }],
        [local.ns, "ConnectionsRejected", "AutoScalingGroupName", local.asg, { stat = "Sum", label = "upgrades refused" }],
        [local.ns, "SlowConsumerCloses", "AutoScalingGroupName", local.asg, { stat = "Sum", label = "slow-consumer closes" }],
      ]
      extra = {}
    },
    {
      title = "Redis as the nodes see it"
      metrics = [
        [local.ns, "RedisErrors", "AutoScalingGroupName", local.asg, { stat = "Sum", label = "failed operations" }],
        [local.ns, "RedisLatency", "AutoScalingGroupName", local.asg, { stat = "Average", label = "mean latency (ms)", yAxis = "right" }],
        [local.ns, "RedisReachable", "AutoScalingGroupName", local.asg, { stat = "Minimum", label = "reachable from every node (1 = yes)" }],
      ]
      extra = {}
    },
    {
      title = "Load balancer target health"
      metrics = [
        ["AWS/ApplicationELB", "HealthyHostCount", "TargetGroup", local.tg, "LoadBalancer", local.lb, { stat = "Minimum", label = "healthy (/ready)" }],
        ["AWS/ApplicationELB", "UnHealthyHostCount", "TargetGroup", local.tg, "LoadBalancer", local.lb, { stat = "Maximum", label = "unhealthy" }],
      ]
      extra = {}
    },
    {
      title = "Load balancer 5xx and WebSocket upgrades"
      metrics = [
        ["AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count", "LoadBalancer", local.lb, { stat = "Sum", label = "5xx from the load balancer" }],
        ["AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", "TargetGroup", local.tg, "LoadBalancer", local.lb, { stat = "Sum", label = "5xx from the nodes" }],
        ["AWS/ApplicationELB", "NewConnectionCount", "LoadBalancer", local.lb, { stat = "Sum", label = "new client connections", yAxis = "right" }],
      ]
      extra = {}
    },
    {
      title = "Auto Scaling group size"
      metrics = [
        ["AWS/AutoScaling", "GroupDesiredCapacity", "AutoScalingGroupName", local.asg, { stat = "Maximum", label = "desired" }],
        ["AWS/AutoScaling", "GroupInServiceInstances", "AutoScalingGroupName", local.asg, { stat = "Maximum", label = "in service" }],
        ["AWS/AutoScaling", "GroupPendingInstances", "AutoScalingGroupName", local.asg, { stat = "Maximum", label = "pending" }],
        ["AWS/AutoScaling", "GroupTerminatingInstances", "AutoScalingGroupName", local.asg, { stat = "Maximum", label = "terminating" }],
      ]
      extra = {}
    },
    {
      title   = "ElastiCache engine CPU (%)"
      metrics = [for id in var.redis_cluster_ids : ["AWS/ElastiCache", "EngineCPUUtilization", "CacheClusterId", id, { stat = "Average", label = id }]]
      extra   = {}
    },
    {
      title   = "ElastiCache memory used (%)"
      metrics = [for id in var.redis_cluster_ids : ["AWS/ElastiCache", "DatabaseMemoryUsagePercentage", "CacheClusterId", id, { stat = "Maximum", label = id }]]
      extra   = {}
    },
    {
      title   = "ElastiCache client connections"
      metrics = [for id in var.redis_cluster_ids : ["AWS/ElastiCache", "CurrConnections", "CacheClusterId", id, { stat = "Maximum", label = id }]]
      extra   = {}
    },
    {
      title   = "ElastiCache evictions"
      metrics = [for id in var.redis_cluster_ids : ["AWS/ElastiCache", "Evictions", "CacheClusterId", id, { stat = "Sum", label = id }]]
      extra   = {}
    },
  ]

  alarm_arns = concat(
    [
      aws_cloudwatch_metric_alarm.unhealthy_targets.arn,
      aws_cloudwatch_metric_alarm.http_5xx.arn,
      aws_cloudwatch_metric_alarm.redis_unreachable.arn,
      aws_cloudwatch_metric_alarm.connections_near_max.arn,
    ],
    aws_cloudwatch_metric_alarm.redis_memory[*].arn,
    aws_cloudwatch_metric_alarm.redis_evictions[*].arn,
  )
}

resource "aws_cloudwatch_dashboard" "this" {
  dashboard_name = var.name
  dashboard_body = jsonencode({
    widgets = concat(
      [{
        type   = "alarm"
        x      = 0
        y      = 0
        width  = 24
        height = 3
        properties = {
          title  = "Alarms"
          alarms = local.alarm_arns
        }
      }],
      [for i, w in local.widgets : {
        type   = "metric"
        x      = (i % 2) * 12
        y      = 3 + floor(i / 2) * 6
        width  = 12
        height = 6
        properties = merge({
          title   = w.title
          region  = var.region
          view    = "timeSeries"
          stacked = false
          period  = 60
          metrics = w.metrics
        }, w.extra)
      }],
    )
  })
}
