# Monitoring module against a mocked AWS provider: what the dashboard shows,
# what each alarm watches and when it goes off, and whom it notifies.

mock_provider "aws" {
  mock_resource "aws_cloudwatch_metric_alarm" {
    defaults = {
      arn = "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:sb-test-alarm"
    }
  }

  mock_resource "aws_sns_topic" {
    defaults = {
      arn = "arn:aws:sns:eu-west-1:123456789012:sb-test-alarms"
    }
  }
}

variables {
  name                    = "sb-test"
  region                  = "eu-west-1"
  asg_name                = "sb-test-nodes"
  alb_arn_suffix          = "app/sb-test-alb/0123456789abcdef"
  target_group_arn_suffix = "targetgroup/sbtes-20250101/0123456789abcdef"
  redis_cluster_ids       = ["sb-test-redis-001", "sb-test-redis-002"]
  max_connections         = 10000
  kms_key_arn             = "arn:aws:kms:eu-west-1:123456789012:key/01234567-89ab-cdef-0123-456789abcdef"
}

run "dashboard" {
  # The alarm widget lists alarm ARNs, known once the mock applies.
  command = apply

  module {
    source = "./modules/monitoring"
  }

  assert {
    condition = alltrue([for t in [
      "WebSocket connections per instance",
      "Messages per second",
      "Load balancer target health",
      "Load balancer 5xx and WebSocket upgrades",
      "Auto Scaling group size",
      "ElastiCache engine CPU (%)",
      "ElastiCache memory used (%)",
      "ElastiCache client connections",
      "ElastiCache evictions",
      "Redis as the nodes see it",
    ] : contains([for w in jsondecode(aws_cloudwatch_dashboard.this.dashboard_body).widgets : w.properties.title], t)])
    error_message = "The dashboard must show connections per instance, message throughput, target health, 5xx, group size and ElastiCache CPU, memory, connections and evictions."
  }

  assert {
    condition = anytrue([
      for w in jsondecode(aws_cloudwatch_dashboard.this.dashboard_body).widgets :
      strcontains(w.properties.metrics[0][0].expression, "{Switchboard,AutoScalingGroupName,InstanceId} MetricName=\"Connections\" AutoScalingGroupName=\"sb-test-nodes\"")
      if w.properties.title == "WebSocket connections per instance"
    ])
    error_message = "Connections per instance must come from the node metrics of this group, one line per instance."
  }

  assert {
    condition = anytrue([
      for w in jsondecode(aws_cloudwatch_dashboard.this.dashboard_body).widgets :
      length(w.properties.metrics) == 2 && alltrue([for m in w.properties.metrics : m[0] == "AWS/ElastiCache" && contains(var.redis_cluster_ids, m[3])])
      if w.properties.title == "ElastiCache evictions"
    ])
    error_message = "ElastiCache widgets must have one line per Redis node."
  }

  assert {
    condition = [
      for w in jsondecode(aws_cloudwatch_dashboard.this.dashboard_body).widgets :
      length(w.properties.alarms) if w.type == "alarm"
    ] == [8]
    error_message = "The dashboard must show the state of every alarm (4 + 2 per Redis node)."
  }

  assert {
    condition     = alltrue([for w in jsondecode(aws_cloudwatch_dashboard.this.dashboard_body).widgets : w.x + w.width <= 24])
    error_message = "Widgets must fit the dashboard's 24 columns."
  }
}

run "alarms" {
  command = plan

  module {
    source = "./modules/monitoring"
  }

  assert {
    condition = (
      aws_cloudwatch_metric_alarm.unhealthy_targets.namespace == "AWS/ApplicationELB"
      && aws_cloudwatch_metric_alarm.unhealthy_targets.metric_name == "UnHealthyHostCount"
      && aws_cloudwatch_metric_alarm.unhealthy_targets.dimensions == tomap({ LoadBalancer = var.alb_arn_suffix, TargetGroup = var.target_group_arn_suffix })
      && aws_cloudwatch_metric_alarm.unhealthy_targets.threshold == 0
      && aws_cloudwatch_metric_alarm.unhealthy_targets.comparison_operator == "GreaterThanThreshold"
    )
    error_message = "An unhealthy target of this target group must set off the alarm."
  }

  assert {
    condition = (
      anytrue([for q in aws_cloudwatch_metric_alarm.http_5xx.metric_query : q.return_data == true && q.expression == "FILL(elb, 0) + FILL(target, 0)"])
      && [for q in aws_cloudwatch_metric_alarm.http_5xx.metric_query : q.metric[0].metric_name if q.id == "elb"] == ["HTTPCode_ELB_5XX_Count"]
      && [for q in aws_cloudwatch_metric_alarm.http_5xx.metric_query : q.metric[0].metric_name if q.id == "target"] == ["HTTPCode_Target_5XX_Count"]
      && aws_cloudwatch_metric_alarm.http_5xx.threshold == 10
    )
    error_message = "5xx from the load balancer and from the nodes together must set off the 5xx alarm above 10 in 5 minutes."
  }

  assert {
    condition = (
      aws_cloudwatch_metric_alarm.redis_unreachable.namespace == "Switchboard"
      && aws_cloudwatch_metric_alarm.redis_unreachable.metric_name == "RedisReachable"
      && aws_cloudwatch_metric_alarm.redis_unreachable.statistic == "Minimum"
      && aws_cloudwatch_metric_alarm.redis_unreachable.comparison_operator == "LessThanThreshold"
      && aws_cloudwatch_metric_alarm.redis_unreachable.threshold == 1
      && aws_cloudwatch_metric_alarm.redis_unreachable.dimensions == tomap({ AutoScalingGroupName = "sb-test-nodes" })
    )
    error_message = "Any node of the group reporting Redis unreachable must set off the Redis alarm."
  }

  assert {
    condition = (
      aws_cloudwatch_metric_alarm.connections_near_max.metric_name == "Connections"
      && aws_cloudwatch_metric_alarm.connections_near_max.statistic == "Maximum"
      && aws_cloudwatch_metric_alarm.connections_near_max.threshold == 8000
    )
    error_message = "One node above 80% of MAX_CONNECTIONS must set off the connections alarm."
  }

  assert {
    condition = (
      length(aws_cloudwatch_metric_alarm.redis_memory) == 2
      && tolist([for a in aws_cloudwatch_metric_alarm.redis_memory : a.dimensions.CacheClusterId]) == var.redis_cluster_ids
      && alltrue([for a in aws_cloudwatch_metric_alarm.redis_memory : a.metric_name == "DatabaseMemoryUsagePercentage" && a.threshold == 80])
    )
    error_message = "Every Redis node must have a memory alarm at 80%."
  }

  assert {
    condition = (
      length(aws_cloudwatch_metric_alarm.redis_evictions) == 2
      && alltrue([for a in aws_cloudwatch_metric_alarm.redis_evictions : a.metric_name == "Evictions" && a.threshold == 0 && a.comparison_operator == "GreaterThanThreshold"])
    )
    error_message = "Any eviction on any Redis node must set off an alarm."
  }

  assert {
    condition     = length(aws_sns_topic.alarms) == 0 && length(aws_cloudwatch_metric_alarm.unhealthy_targets.alarm_actions) == 0
    error_message = "Without a topic or e-mail addresses the alarms notify nobody and no topic is created."
  }
}

run "alarms_mail_a_new_topic" {
  command = apply

  module {
    source = "./modules/monitoring"
  }

  variables {
    alarm_emails = ["oncall@example.com"]
  }

  assert {
    condition     = aws_sns_topic.alarms[0].kms_master_key_id == var.kms_key_arn && aws_sns_topic_subscription.email["oncall@example.com"].protocol == "email"
    error_message = "alarm_emails must create an encrypted topic with an e-mail subscription."
  }

  assert {
    condition = alltrue([
      for a in concat([aws_cloudwatch_metric_alarm.unhealthy_targets, aws_cloudwatch_metric_alarm.http_5xx, aws_cloudwatch_metric_alarm.redis_unreachable, aws_cloudwatch_metric_alarm.connections_near_max], aws_cloudwatch_metric_alarm.redis_memory, aws_cloudwatch_metric_alarm.redis_evictions) :
      a.alarm_actions == toset([aws_sns_topic.alarms[0].arn]) && a.ok_actions == toset([aws_sns_topic.alarms[0].arn])
    ])
    error_message = "Every alarm must notify the topic, on alarm and on recovery."
  }

  assert {
    condition     = output.alarm_topic_arn == aws_sns_topic.alarms[0].arn
    error_message = "The topic must be an output."
  }
}

run "alarms_use_an_existing_topic" {
  command = plan

  module {
    source = "./modules/monitoring"
  }

  variables {
    alarm_topic_arn = "arn:aws:sns:eu-west-1:123456789012:oncall"
    alarm_emails    = ["ignored@example.com"]
  }

  assert {
    condition     = length(aws_sns_topic.alarms) == 0 && aws_cloudwatch_metric_alarm.redis_unreachable.alarm_actions == toset(["arn:aws:sns:eu-west-1:123456789012:oncall"])
    error_message = "With alarm_topic_arn the alarms notify that topic and none is created."
  }
}
