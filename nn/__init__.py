"""ommatidia.nn"""
