# Target tracking on CPU and on connections per node. The connection count is published
# every minute by meshmq-connections (terraform/scripts/publish-connections) on each
# replicant as Meshmq/ConnectionsPerNode{AutoScalingGroupName}; the policy averages it over
# the group's instances. Scale-in under either policy happens only when both allow it.

resource "aws_autoscaling_policy" "cpu" {
  name                   = "meshmq-cpu"
  autoscaling_group_name = aws_autoscaling_group.replicants.name
  policy_type            = "TargetTrackingScaling"
  target_tracking_configuration {
    predefined_metric_specification {
      predefined_metric_type = "ASGAverageCPUUtilization"
    }
    target_value = var.target_cpu_percent
  }
}

resource "aws_autoscaling_policy" "connections" {
  name                   = "meshmq-connections-per-node"
  autoscaling_group_name = aws_autoscaling_group.replicants.name
  policy_type            = "TargetTrackingScaling"
  target_tracking_configuration {
    customized_metric_specification {
      namespace   = "Meshmq"
      metric_name = "ConnectionsPerNode"
      statistic   = "Average"
      unit        = "Count"
      metric_dimension {
        name  = "AutoScalingGroupName"
        value = aws_autoscaling_group.replicants.name
      }
    }
    target_value = var.target_connections_per_node
  }
}
