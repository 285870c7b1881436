"""The user service's AWS stack as a CDK app: one stack class, one instance per stage."""
