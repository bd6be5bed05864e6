"""tamper"""
