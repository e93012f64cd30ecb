"""Generated from proto/llmcache/v1/cache.proto by scripts/generate-python.sh. DO NOT EDIT!"""
