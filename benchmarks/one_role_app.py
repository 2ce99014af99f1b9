"""Second baseline: one stack with one IAM role.

Loading aws-iam (or aws-kms) into the jsii kernel adds ~0.35 s to the Node process's exit on this
machine, a fixed cost of any real app; this baseline separates it from the cost of our own code.
"""

import aws_cdk as cdk
from aws_cdk import aws_iam as iam

app = cdk.App()
stack = cdk.Stack(app, "OneRole")
iam.Role(stack, "Role", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"))
app.synth()
