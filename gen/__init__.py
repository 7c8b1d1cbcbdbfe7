"""ommatidia.gen"""
