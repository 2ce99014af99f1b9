"""Baseline for the synth benchmark: an app with one empty stack (same import of aws_cdk)."""

import aws_cdk as cdk

app = cdk.App()
stack = cdk.Stack(app, "Empty")
cdk.CfnWaitConditionHandle(stack, "Placeholder")  # a stack needs one resource to synthesize
app.synth()
